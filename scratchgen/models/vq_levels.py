"""What every VQ-VAE network does with its parts, whatever their design (``--arch residual`` in
:mod:`scratchgen.models.vqvae`, ``--arch plain`` in :mod:`scratchgen.models.vqvae_plain`):
``forward`` = ``quantize`` (encoders and codebooks), then decode the codewords.
"""
from .. import functional as F
from .. import nn


class OneLevelNet(nn.Module):
    """x -> encoder -> z_e -> quantizer -> z_q -> decoder -> x̂; subclasses build ``encoder``,
    ``quantizer`` and ``decoder``."""

    @property
    def quantizers(self):
        return [self.quantizer]

    def quantize(self, x):
        """[Quantized] for images x (N, C, H, W): the encoder and the codebook, no decoder."""
        return [self.quantizer(self.encoder(x))]

    def forward(self, x):
        """-> (decoder output, [Quantized]) for images x (N, C, H, W)."""
        qs = self.quantize(x)
        return self.decoder(qs[0].z_q), qs

    def decode_codes(self, codes):
        """Decoder output from a list with one grid of integer codes (N, h, w)."""
        return self.decoder(self.quantizer.lookup(codes[0]))


class TwoLevelNet(nn.Module):
    """Top and bottom codes; subclasses build ``quantizer_top``, ``quantizer_bottom``, ``upsample_top``
    and ``decoder``, and define ``quantize(x) -> [top, bottom]``."""

    @property
    def quantizers(self):
        return [self.quantizer_top, self.quantizer_bottom]

    def forward(self, x):
        top, bottom = self.quantize(x)
        return self.decode(top.z_q, bottom.z_q), [top, bottom]

    def decode(self, q_top, q_bottom):
        """The decoder reads the bottom codewords and the upsampled top codewords."""
        return self.decoder(F.cat([q_bottom, self.upsample_top(q_top)], dim=1))

    def decode_codes(self, codes):
        """Decoder output from [top codes (N, ht, wt), bottom codes (N, hb, wb)]."""
        return self.decode(self.quantizer_top.lookup(codes[0]), self.quantizer_bottom.lookup(codes[1]))
