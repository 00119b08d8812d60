"""A Python layer for the pycaffe tests (imported by pycaffe by module name; tests/caffe is put on
sys.path)."""
import caffe
import yaml


class AffineLayer(caffe.Layer):
    """top = scale * bottom + shift, elementwise; param_str "{'scale': s, 'shift': b}"."""

    def setup(self, bottom, top):
        params = yaml.safe_load(self.param_str)
        self.scale = float(params['scale'])
        self.shift = float(params['shift'])

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.scale * bottom[0].data + self.shift

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = self.scale * top[0].diff
