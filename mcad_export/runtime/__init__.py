"""Query-time runtime. Must stay torch-free: phones and small servers run only this."""

from .tokenizer import Tokenizer

__all__ = ["Tokenizer"]
