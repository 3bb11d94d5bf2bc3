"""The teacher-student method in plain PyTorch: losses, DARM masking, CutMix mixing, the engine
(``TeacherStudentTrainer``: one ``train_step`` and one ``evaluate``), the training loop and the metrics.

Defaults are the published FGI code's; variants are documented options. The part imports only the models
and the root: nothing of Ray, MLflow, the data files or CLI flags.
"""
