"""The YouTube-8M frame features' sizes, the one place they are defined: the data readers, the
models and the FLOP counts all take them from here (so ``models/`` needs nothing of ``data/``)."""

RGB_SIZE = 1024
"""Bytes (dimensions) of a frame's rgb feature: PCA-reduced Inception features."""
AUDIO_SIZE = 128
"""Bytes (dimensions) of a frame's audio feature: PCA-reduced VGGish features."""
FEATURE_SIZE = RGB_SIZE + AUDIO_SIZE
"""A frame as the models read it: rgb then audio."""
MAX_FRAMES = 300
"""Frames the official reader keeps of a video (one per second)."""
SEGMENT_LENGTH = 5
"""Frames of a 2019 segment-rated segment (five seconds)."""
