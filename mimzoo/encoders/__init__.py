"""Encoders: building timm backbones and the one encoder contract mimzoo hands out.

`encoder.py` imports torch, so it is imported only where an encoder is built.
"""
