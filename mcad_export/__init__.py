"""mcad-export: deploy distilled CLIP-style dual encoders to phones, with proof at every step."""

__version__ = "0.1.0"
