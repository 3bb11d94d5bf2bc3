"""Datasets from raw folders to torch: one adapter per raw layout (``sources``), image and mask files
(``io``), fixation CSVs (``fixations``), seeded splits, gaze heatmaps (``gaze``), CRF refinement (``crf``),
the content-addressed cache and ``fgi prepare`` (``cache``, ``prepare``), its report, the torch ``Dataset``
that thresholds soft maps into gaze levels (``dataset``) and the built-in synthetic dataset."""
