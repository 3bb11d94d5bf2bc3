"""Teacher and student networks."""

from fgi.models.student import Student
from fgi.models.teacher import Teacher
from fgi.models.two_level import TwoLevel
from fgi.models.unet import UNet

__all__ = ["Student", "Teacher", "TwoLevel", "UNet"]
