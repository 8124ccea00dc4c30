"""The project's own error types.

Every failure a user can cause (a bad image, a malformed annotation file, a foreign checkpoint, an
invalid config key) raises one of these with a message that names the file and the problem. Batch
jobs catch :class:`CornerNetSaccadeError` to skip and report an item and go on.
"""
from __future__ import annotations


class CornerNetSaccadeError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageError(CornerNetSaccadeError):
    """An image file or array cannot be used (unreadable, truncated, too large, bad mode)."""


class AnnotationError(CornerNetSaccadeError):
    """An annotation file (COCO JSON, VOC XML, CSV) is malformed or inconsistent."""


class CheckpointError(CornerNetSaccadeError):
    """A weights file is not a checkpoint, is truncated, or does not fit the model."""


class ConfigError(CornerNetSaccadeError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range)."""


class OutputError(CornerNetSaccadeError):
    """A result cannot be written: the path is not writable, or writing would replace an input or a
    file the run did not create."""


class TrainingError(CornerNetSaccadeError):
    """Training cannot go on (e.g. a non-finite loss)."""
