"""Image databases (imdbs): the VOC-format loader, the embedded synthetic dataset, VOC evaluation.

Use ``datasets.factory.get_imdb(name)`` to get an imdb by name.
"""
