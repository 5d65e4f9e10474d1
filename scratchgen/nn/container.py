"""``Sequential``: modules applied one after another."""
from .module import Module


class Sequential(Module):
    """``Sequential(m0, m1, ...)`` computes ``m_last(... m1(m0(x)))``.

    Children are named "0", "1", ... (so parameters are "0.weight", "1.bias", ...), or by the
    keys of a dict passed as the only argument. Indexable (``model[0]``, ``model[-1]``,
    ``model[1:3]``), with ``len`` and iteration.
    """

    def __init__(self, *modules):
        super().__init__()
        named = modules[0].items() if len(modules) == 1 and isinstance(modules[0], dict) else \
            ((str(i), m) for i, m in enumerate(modules))
        for name, module in named:
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {name} is a {type(module).__name__}, not a "
                                f"Module (use a layer such as nn.ReLU() rather than F.relu)")
            self.add_module(name, module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(dict(items[index]))
        if not -len(items) <= index < len(items):
            raise IndexError(f"Sequential index {index} out of range for {len(items)} modules")
        return items[index][1]

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        for module in self:
            x = module(x)
        return x
