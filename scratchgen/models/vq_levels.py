"""What every VQ-VAE network does with its parts, whatever their design (``--arch residual`` in
:mod:`scratchgen.models.vqvae`, ``--arch plain`` in :mod:`scratchgen.models.vqvae_plain`):
``forward`` = ``quantize`` (encoders and codebooks), then decode the codewords.
"""
from .. import functional as F
from .. import nn
from ..random import get_rng


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

    bottom_dropout = 0.0  # fraction of training images decoded without their bottom codes (VQVAE2Net sets it)

    def forward(self, x):
        top, bottom = self.quantize(x)
        q_bottom = bottom.z_q
        if self.training and self.bottom_dropout > 0:
            q_bottom = q_bottom * self.bottom_keep_mask(len(x), q_bottom.dtype)
        return self.decode(top.z_q, q_bottom), [top, bottom]

    def bottom_keep_mask(self, n, dtype):
        """(n, 1, 1, 1): 0 for the images whose bottom codewords the decoder does not see this step
        (each with probability ``bottom_dropout``), 1 for the others.

        NOTE: without it the decoder may ignore the top level altogether: on 28x28 digits the 14x14
        bottom grid alone reconstructs the image, and the top codes then decide nothing (swap two
        images' top codes and the decoded digits do not change). An image decoded from its top
        codes alone makes the top level carry the whole picture; the bottom adds the detail."""
        keep = get_rng().random(n) >= self.bottom_dropout
        return keep.astype(dtype).reshape(n, 1, 1, 1)

    def decode(self, q_top, q_bottom):
        """The decoder reads the bottom codewords and the upsampled top codewords."""
        return self.decoder(F.cat([q_bottom, self.upsample_top(q_top)], dim=1))

    def decode_codes(self, codes):
        """Decoder output from [top codes (N, ht, wt), bottom codes (N, hb, wb)]."""
        return self.decode(self.quantizer_top.lookup(codes[0]), self.quantizer_bottom.lookup(codes[1]))
