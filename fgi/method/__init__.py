"""Losses, DARM masking and CutMix mixing of the teacher-student method."""
