"""hark's trainer: a folder of a few clips per sound in, a model bundle for the device out.

Needs the ``trainer`` extra (TensorFlow, matplotlib); the device never imports this package.
"""
