"""The networks, in plain PyTorch: a compact U-Net (``unet``), the text cross-attention that the teacher
applies at chosen encoder levels (``fusion``), the text-conditioned teacher, the narrower image-only
student, and the two-level gaze baseline (``two_level``, GazeMedSeg's two networks)."""

from fgi.models.student import Student
from fgi.models.teacher import Teacher
from fgi.models.two_level import TwoLevel
from fgi.models.unet import UNet

__all__ = ["Student", "Teacher", "TwoLevel", "UNet"]
