"""codefactory: turn a git repository into a supervised fine-tuning dataset about that project."""

from codefactory.errors import CodefactoryError

__version__ = "0.1.0"

__all__ = ["CodefactoryError", "__version__"]
