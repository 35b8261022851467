"""formablate: a pytest experiment harness for SFT data-format ablations on small language models."""

from formablate.errors import HarnessError

__all__ = ["HarnessError", "__version__"]
__version__ = "0.1.0"
