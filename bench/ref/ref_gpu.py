#!/usr/bin/env python3
"""Times the ORIGINAL UniBiomed code (its official Python modules, released sizes, random weights)
on a device, so that the project's benches can be compared with it in the same run:

  ref_gpu.py vit  [--device cuda] [--dtype bfloat16] [--batch 1,8,32]
      InternViT-300M + pixel shuffle + mlp1 (Sa2VAChatModel.extract_feature), 448x448 tiles
  ref_gpu.py llm  [--batch 1,8] [--prefill 300] [--decode-tokens 20]
      Qwen2.5-0.5B: prefill of inputs_embeds (body + last-position lm_head, the work the
      project's bench_llm times) and greedy decode steps with the KV cache
  ref_gpu.py sam2 [--batch 1,8]
      SAM2 Hiera-L image encoder + FPN (forward_image) on 1024x1024 frames, then the per-[SEG]
      prompt encoder + mask decoder on the cached features (track_step)

The official files are not part of this project: PYTHONPATH must hold the folder that
scripts/gpu-ref-prepare.sh assembles (UniBiomed's projects/unibiomed/hf/models files and
transformers' Qwen2 files at the commits the project was checked against, with import stubs).
Timing: `--warmup` untimed calls, then the median of `--reps` calls, each ended by a device
synchronisation. Memory: torch.cuda.max_memory_allocated per stage on a GPU.
Every figure is also printed as one line
  RESULT name=ref_<figure> batch=B device=D dtype=T value=V unit=U [peak_gpu_mib=M]
with the same <figure> names as the project's benches, for scripts/gpu-check.sh to pair them.
On a CPU with torch 1.13 (the --cpu check of scripts/gpu-check.sh) the few torch 2.x calls the
official code makes are given plain equivalents (see cpu_shims); they change no arithmetic.
"""
# SPDX-License-Identifier: GPL-3.0-or-later
import argparse
import contextlib
import statistics
import sys
import time


def cpu_shims(torch):
    """What the official code asks of torch 2.x or of CUDA, for a CPU run on torch 1.13."""
    import torch.nn.functional as F

    if not hasattr(F, "scaled_dot_product_attention"):
        def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
            assert attn_mask is None and not is_causal and dropout_p == 0.0
            s = q.size(-1) ** -0.5 if scale is None else scale
            return torch.matmul(torch.matmul(q * s, k.transpose(-2, -1)).softmax(-1), v)
        F.scaled_dot_product_attention = sdpa
    torch.backends.cuda.sdp_kernel = lambda *a, **k: contextlib.nullcontext()
    torch.Tensor.cuda = lambda self, *a, **k: self
    real_autocast = torch.autocast

    def autocast(device_type, *a, **k):
        return contextlib.nullcontext() if device_type == "cuda" else real_autocast(device_type, *a, **k)
    torch.autocast = autocast


class Clock:
    def __init__(self, torch, device):
        self.torch, self.device = torch, device

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def median(self, fn, warmup, reps):
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def reset_peak(self):
        if self.device.type == "cuda":
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self):
        if self.device.type == "cuda":
            return self.torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return None


def result(name, batch, args, value, unit, peak_mib=None, extra=""):
    line = "RESULT name=ref_%s batch=%d device=%s dtype=%s%s value=%.6g unit=%s" % (
        name, batch, args.device, args.dtype, extra, value, unit)
    if peak_mib is not None:
        line += " peak_gpu_mib=%.0f" % peak_mib
    print(line)
    sys.stdout.flush()


VIT_CONFIG = dict(  # InternViT-300M-448px-V2_5 as InternVL2.5-1B configures it (inference values)
    num_channels=3, patch_size=14, image_size=448, qkv_bias=True, hidden_size=1024, num_attention_heads=16,
    intermediate_size=4096, qk_normalization=False, num_hidden_layers=24, use_flash_attn=False,
    hidden_act="gelu", norm_type="layer_norm", layer_norm_eps=1e-6, dropout=0.0, drop_path_rate=0.0,
    attention_dropout=0.0, initializer_range=1e-10, initializer_factor=0.1)
LLM_HIDDEN = 896
QWEN2_CONFIG = dict(  # Qwen2.5-0.5B as UniBiomed's llm_config (untied lm_head, 151679 tokens)
    vocab_size=151679, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
    num_key_value_heads=2, hidden_act="silu", max_position_embeddings=32768, rms_norm_eps=1e-6,
    rope_theta=1000000.0, tie_word_embeddings=False, use_sliding_window=False, sliding_window=32768,
    max_window_layers=21, attention_dropout=0.0, bos_token_id=151643, eos_token_id=151645,
    initializer_range=0.02, use_cache=True)


def stage_vit(torch, args, clock, dev, dt):
    from torch import nn
    from unibiomed_hf.configuration_intern_vit import InternVisionConfig
    from unibiomed_hf.modeling_intern_vit import InternVisionModel
    from unibiomed_hf.modeling_sa2va_chat import Sa2VAChatModel

    class VitHost(nn.Module):
        # Sa2VAChatModel's own extract_feature and pixel_shuffle on the official vision model,
        # with the projector Sa2VAChatModel builds (LayerNorm, Linear, GELU, Linear).
        extract_feature = Sa2VAChatModel.extract_feature
        pixel_shuffle = Sa2VAChatModel.pixel_shuffle

        def __init__(self):
            super().__init__()
            self.vision_model = InternVisionModel(InternVisionConfig(**VIT_CONFIG))
            self.select_layer, self.downsample_ratio, self.ps_version = -1, 0.5, "v2"
            width = VIT_CONFIG["hidden_size"] * 4
            self.mlp1 = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, LLM_HIDDEN), nn.GELU(),
                                      nn.Linear(LLM_HIDDEN, LLM_HIDDEN))

    model = VitHost().eval().to(dev, dt)
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for b in args.batch:
            tiles = torch.randn(b, 3, 448, 448, generator=g).to(dev, dt)
            clock.reset_peak()
            s = clock.median(lambda: model.extract_feature(tiles), args.warmup, args.reps)
            print("vit: batch %d: %.4f s = %.2f tiles/s" % (b, s, b / s))
            result("vision_tiles_per_s", b, args, b / s, "tiles/s", clock.peak_mib())


def stage_llm(torch, args, clock, dev, dt):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.cache_utils import DynamicCache

    config = Qwen2Config(**QWEN2_CONFIG)
    config._attn_implementation = "eager"  # what Sa2VAChatModel sets when flash-attn is missing
    model = Qwen2ForCausalLM(config).eval().to(dev, dt)
    T = args.prefill
    g = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        for b in args.batch:
            embeds = torch.randn(b, T, config.hidden_size, generator=g).to(dev, dt)

            def prefill():
                cache = DynamicCache()
                h = model.model(inputs_embeds=embeds, past_key_values=cache, use_cache=True,
                                return_dict=True).last_hidden_state
                return model.lm_head(h[:, -1, :]).argmax(-1), cache

            clock.reset_peak()
            s = clock.median(prefill, args.warmup, args.reps)
            print("llm: batch %d: prefill %d tokens %.4f s = %.1f tok/s" % (b, T, s, b * T / s))
            result("llm_prefill_tok_per_s", b, args, b * T / s, "tok/s", clock.peak_mib(), " tokens=%d" % T)
            # Greedy decode after the prefill, one new token per sequence per step.
            nxt, cache = prefill()
            clock.sync()
            steps = []
            position = T
            for _ in range(args.decode_tokens):
                t0 = time.perf_counter()
                h = model.model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True,
                                position_ids=torch.full((b, 1), position, dtype=torch.long, device=dev),
                                return_dict=True).last_hidden_state
                nxt = model.lm_head(h[:, -1, :]).argmax(-1)
                clock.sync()
                steps.append(time.perf_counter() - t0)
                position += 1
            step = statistics.median(steps[1:] if len(steps) > 2 else steps)
            print("llm: batch %d: decode median %.2f ms/step = %.1f tok/s" % (b, 1e3 * step, b / step))
            result("llm_decode_tok_per_s", b, args, b / step, "tok/s", clock.peak_mib(), " context=%d" % T)


def stage_sam2(torch, args, clock, dev, dt):
    from torch import nn
    from unibiomed_hf.sam2 import SAM2

    sam = SAM2().eval().to(dev, dt)
    text_hidden_fcs = nn.Sequential(nn.Linear(LLM_HIDDEN, LLM_HIDDEN), nn.ReLU(inplace=True),
                                    nn.Linear(LLM_HIDDEN, sam.hidden_dim), nn.Dropout(0.0)).eval().to(dev, dt)
    m = sam.sam2_model
    g = torch.Generator().manual_seed(3)
    # The original runs SAM2 under bfloat16 autocast on a GPU (language_embd_inference).
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if dev.type == "cuda" and dt == torch.bfloat16 \
        else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        backbone = None
        for b in args.batch:
            frames = torch.randint(0, 256, (b, 3, 1024, 1024), generator=g).float().to(dev)
            pixels = torch.stack([sam.preprocess_image(f, dtype=dt) for f in frames]).to(dt)
            clock.reset_peak()
            last = [None]  # holds one output, so that two batches of features never coexist

            def encode():
                last[0] = None
                last[0] = m.forward_image(pixels)

            s = clock.median(encode, args.warmup, args.reps)
            last[0] = None
            print("sam2: batch %d: image encoder %.4f s = %.2f frames/s" % (b, s, b / s))
            result("sam2_frames_per_s", b, args, b / s, "frames/s", clock.peak_mib())
            if b == 1:
                backbone = m.forward_image(pixels)
        if backbone is None:
            return
        _, feats, pos, sizes = m._prepare_backbone_features(backbone)
        hidden = torch.randn(1, LLM_HIDDEN, generator=g).to(dev, dt)

        def decode():
            lang = text_hidden_fcs(hidden)[None]
            return m.track_step(frame_idx=0, is_init_cond_frame=True, current_vision_feats=feats,
                                current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None, mask_inputs=None,
                                output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                                num_frames=1, run_mem_encoder=False, language_embd=lang)

        clock.reset_peak()
        s = clock.median(decode, args.warmup, args.reps)
        print("sam2: prompt encoder + mask decoder per [SEG] (cached features): %.2f ms" % (1e3 * s))
        result("sam2_decoder_ms", 1, args, 1e3 * s, "ms", clock.peak_mib())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["vit", "llm", "sam2"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    ap.add_argument("--batch", default=None, help="comma list (vit: 1,8,32; llm and sam2: 1,8)")
    ap.add_argument("--prefill", type=int, default=300)
    ap.add_argument("--decode-tokens", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = ap.parse_args()
    default_batch = {"vit": "1,8,32", "llm": "1,8", "sam2": "1,8"}[args.stage]
    args.batch = [int(x) for x in (args.batch or default_batch).split(",")]

    import torch

    dev = torch.device(args.device)
    if dev.type == "cpu":
        cpu_shims(torch)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dt = getattr(torch, args.dtype)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print("ref_gpu %s: torch %s on %s (%s), %s, batches %s, warm-up %d, median of %d"
          % (args.stage, torch.__version__, args.device, name, args.dtype, args.batch, args.warmup, args.reps))
    sys.stdout.flush()
    clock = Clock(torch, dev)
    {"vit": stage_vit, "llm": stage_llm, "sam2": stage_sam2}[args.stage](torch, args, clock, dev, dt)


if __name__ == "__main__":
    main()
