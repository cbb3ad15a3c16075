"""vidistill: knowledge distillation for video understanding on YouTube-8M-format features."""

__version__ = "0.1.0"
