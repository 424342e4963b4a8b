"""The pretraining objectives against an independent implementation (HF transformers).

MAE: ``transformers.ViTMAEForPreTraining`` with the same weights and the same ``noise`` gives the
same mask, the same per-patch predictions (the reconstruction) and the same loss as mimzoo's MAE
objective, to 1e-5. SimMIM: ``ViTForMaskedImageModeling`` with the same ``bool_masked_pos`` gives
the same L1 loss and the same reconstructed pixels. Weights go from transformers to mimzoo
through the MAE plugin's converter (encoder) and :func:`decoder_from_transformers` (decoder),
using transformers 5's in-memory names (``layers.N.attention.q_proj``).
"""

from __future__ import annotations

import pytest
import torch

import mimzoo
from mimzoo.pretrain.models import build_objective
from mimzoo.pretrain.models.mae import decoder_from_transformers
from mimzoo.pretrain.recipe import Decoder, Loss, Masking, Recipe, Target
from mimzoo.pretrain.targets import patchify, unpatchify

transformers = pytest.importorskip("transformers", reason="transformers is the independent reference implementation")

# mae-vit-test: ViT, 32 px, patch 4, width 32, depth 2, 2 heads, MLP 128
ENC = dict(image_size=32, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=128, qkv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu")


def _encoder_sd(hf_sd: dict) -> dict:
    from mimzoo_mae.layouts import convert_transformers

    return convert_transformers({k: v for k, v in hf_sd.items() if k != "vit.embeddings.mask_token"}, None)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_matches_transformers(norm_pix):
    torch.manual_seed(0)
    cfg = transformers.ViTMAEConfig(**ENC, decoder_hidden_size=16, decoder_num_hidden_layers=2,
                                    decoder_num_attention_heads=2, decoder_intermediate_size=64, mask_ratio=0.75,
                                    norm_pix_loss=norm_pix)
    hf = transformers.ViTMAEForPreTraining(cfg).eval()
    recipe = Recipe("mae", masking=Masking("random-patch", 0.75),
                    target=Target("normalized-pixels" if norm_pix else "pixels"), loss=Loss("mse"),
                    decoder=Decoder("mae", dim=16, depth=2, heads=2, mlp_ratio=4.0))
    obj = build_objective(recipe, mimzoo.load("mae-vit-test", pretrained=False)).eval()
    sd = hf.state_dict()
    obj.encoder.load_state_dict(_encoder_sd(sd), strict=True)
    obj.decoder.load_state_dict(decoder_from_transformers(sd), strict=True)

    x, noise = torch.randn(3, 3, 32, 32), torch.rand(3, 64)
    with torch.no_grad():
        ref = hf(pixel_values=x, noise=noise)
        masks = obj.masking.from_noise(noise)
        loss, pred = obj(x, masks), obj.predict(x, masks)
    assert torch.equal(masks.mask, ref.mask.bool())
    assert masks.mask.sum(1).tolist() == [48, 48, 48]
    torch.testing.assert_close(pred, ref.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unpatchify(pred, 4, (8, 8)), hf.unpatchify(ref.logits), rtol=1e-5, atol=1e-5)
    assert abs(loss.item() - ref.loss.item()) < 1e-5
    torch.testing.assert_close(patchify(x, 4), hf.patchify(x))


def test_mae_gradients_match_transformers():
    """One backward pass: the encoder's gradients agree too (training equals, not only inference)."""
    torch.manual_seed(1)
    cfg = transformers.ViTMAEConfig(**ENC, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                                    decoder_num_attention_heads=2, decoder_intermediate_size=64, norm_pix_loss=True)
    hf = transformers.ViTMAEForPreTraining(cfg).train()
    recipe = Recipe("mae", decoder=Decoder("mae", dim=16, depth=1, heads=2))
    obj = build_objective(recipe, mimzoo.load("mae-vit-test", pretrained=False)).train()
    sd = hf.state_dict()
    obj.encoder.load_state_dict(_encoder_sd(sd))
    obj.decoder.load_state_dict(decoder_from_transformers(sd))
    x, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 64)
    hf(pixel_values=x, noise=noise).loss.backward()
    obj(x, obj.masking.from_noise(noise)).backward()
    ours = obj.encoder.blocks[0].attn.qkv.weight.grad
    theirs = torch.cat([hf.vit.layers[0].attention.__getattr__(f"{p}_proj").weight.grad for p in "qkv"])
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(obj.encoder.patch_embed.proj.weight.grad,
                               hf.vit.embeddings.patch_embeddings.projection.weight.grad, rtol=1e-4, atol=1e-6)


def test_simmim_matches_transformers():
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(**ENC, encoder_stride=4)
    hf = transformers.ViTForMaskedImageModeling(cfg).eval()
    recipe = Recipe("simmim", masking=Masking("random-block", 0.6, mask_patch_size=8), target=Target("pixels"),
                    loss=Loss("l1"), decoder=Decoder("mask-token"))
    obj = build_objective(recipe, mimzoo.load("mae-vit-test", pretrained=False)).eval()
    sd = hf.state_dict()
    obj.encoder.load_state_dict(_encoder_sd(sd), strict=True)
    p, c, d = 4, 3, 32
    with torch.no_grad():
        obj.mask_token.copy_(sd["vit.embeddings.mask_token"])
        # 1x1 conv + PixelShuffle orders outputs (channel, row, col); mimzoo's patches are (row, col, channel)
        obj.head.weight.copy_(sd["decoder.0.weight"].view(c, p, p, d).permute(1, 2, 0, 3).reshape(p * p * c, d))
        obj.head.bias.copy_(sd["decoder.0.bias"].view(c, p, p).permute(1, 2, 0).reshape(-1))

    x = torch.randn(3, 3, 32, 32)
    masks = obj.masking(3, torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf(pixel_values=x, bool_masked_pos=masks.mask)
        loss, pred = obj(x, masks), obj.predict(x, masks)
    assert abs(loss.item() - ref.loss.item()) < 1e-5
    torch.testing.assert_close(unpatchify(pred, 4, (8, 8)), ref.reconstruction, rtol=1e-5, atol=1e-5)


def test_transformers_checkpoint_file_drives_reconstruction(tmp_path):
    """A saved ViTMAEForPreTraining (v4 key names on disk) gives mimzoo's pictures the same reconstruction."""
    from safetensors import safe_open

    from mimzoo.pretrain.reconstruct import _objective

    torch.manual_seed(2)
    cfg = transformers.ViTMAEConfig(**ENC, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                                    decoder_num_attention_heads=16, decoder_intermediate_size=64)
    hf = transformers.ViTMAEForPreTraining(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    file = tmp_path / "hf" / "model.safetensors"
    with safe_open(str(file), framework="pt") as f:
        names = list(f.keys())
    assert any(".attention.attention.query." in k for k in names)  # the file keeps transformers 4 names
    objective = _objective(mimzoo.load("mae-vit-test", weights=str(file)), file, None)
    x, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 64)
    with torch.no_grad():
        ours = objective.reconstruct(x, objective.masking.from_noise(noise))
        theirs = hf.unpatchify(hf(pixel_values=x, noise=noise).logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
