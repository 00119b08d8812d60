"""Several imdbs with the same classes used as one training set (e.g.
``voc_2007_trainval+voc_2012_trainval``)."""

import bisect

import numpy as np

from datasets.imdb import imdb


class combined_imdb(imdb):
    """The concatenation of ``parts`` (imdbs with identical class lists), named ``a+b+...``.

    Its roidb is the parts' roidbs one after another; ``'rpn'`` proposals come from one file over the
    combined ``image_index`` (``config['rpn_file']``). Evaluation is refused: evaluate the parts.
    """

    def __init__(self, parts):
        if len(parts) < 2:
            raise ValueError('a combined imdb needs at least two parts')
        for part in parts[1:]:
            if part.classes != parts[0].classes:
                raise ValueError(f'cannot combine {parts[0].name} and {part.name}: their class lists differ '
                                 f'({parts[0].classes} vs {part.classes})')
        super().__init__('+'.join(p.name for p in parts), parts[0].classes)
        self._parts = list(parts)
        self._image_index = [index for part in parts for index in part.image_index]
        self._offsets = [int(x) for x in np.cumsum([0] + [p.num_images for p in parts])]

    @property
    def parts(self):
        return list(self._parts)

    def _locate(self, i):
        """``(part, position in part)`` of image ``i``; flipped copies (after all originals) map to theirs."""
        num_originals = self._offsets[-1]
        if i >= num_originals:
            i -= num_originals
        k = bisect.bisect_right(self._offsets, i) - 1
        return self._parts[k], i - self._offsets[k]

    def image_path_at(self, i):
        part, j = self._locate(i)
        return part.image_path_at(j)

    def image_size_at(self, i):
        part, j = self._locate(i)
        return part.image_size_at(j)

    def gt_roidb(self):
        """The parts' ground-truth roidbs, concatenated."""
        return [entry for part in self._parts for entry in part.gt_roidb()]

    def external_boxes(self, method):
        """The parts' non-network proposals (each with its own source, e.g. its released .mat),
        concatenated; the parts use this imdb's proposal settings."""
        boxes = []
        for part in self._parts:
            part.config.update({k: v for k, v in self.config.items() if k != 'rpn_file'})
            boxes.extend(part.external_boxes(method))
        return boxes

    def evaluate_detections(self, all_boxes, output_dir):
        """Refused: a combined set is for training; evaluate each part on its own."""
        raise RuntimeError(f'{self.name} is a combined training set and cannot be evaluated; evaluate its '
                           f'parts ({", ".join(p.name for p in self._parts)}) separately')
