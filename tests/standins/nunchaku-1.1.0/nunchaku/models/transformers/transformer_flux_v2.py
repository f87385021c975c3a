"""Stand-in for ``NunchakuFluxTransformer2DModelV2``: the class the V2 cache adapter is written for.

In the engine it is a diffusers ``FluxTransformer2DModel`` whose blocks are replaced by quantized
ones (no fused ``.m`` module, unlike ``NunchakuFluxTransformer2dModel``). Here it is the plain
diffusers model; tests turn a tiny transformer into one by setting its class.
"""

from diffusers import FluxTransformer2DModel


class NunchakuFluxTransformer2DModelV2(FluxTransformer2DModel):
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        raise RuntimeError("the nunchaku stand-in cannot load SVDQuant weights; install the real engine")
