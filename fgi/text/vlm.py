"""The ``vlm`` describer: a local vision-language model asked each template's ``vlm_prompt``.

Weights are never downloaded: ``text.vlm_path`` names a folder saved with ``save_pretrained``. The
describer's cache identity (``vlm_model_id``) fingerprints that folder and the decoding settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from fgi.config import TextConfig
from fgi.text.fingerprint import model_fingerprint, safe_name
from fgi.text.items import DescriberError, TextItem, check_item
from fgi.text.templates import Template


def vlm_folder(text_cfg: TextConfig) -> Path:
    """The local model folder of ``text.vlm_path``.

    Raises:
        DescriberError: the setting is empty or the folder has no ``config.json`` (the message says how to fix it).
    """
    if not text_cfg.vlm_path:
        raise DescriberError(
            "text.describer 'vlm' needs text.vlm_path: the local folder of a vision-language model saved with "
            "save_pretrained (weights are never downloaded); set text.vlm_path in the config or use describer 'morphology'"
        )
    path = Path(text_cfg.vlm_path).expanduser()
    if not (path / "config.json").is_file():
        raise DescriberError(
            f"text.vlm_path {str(path)!r} is not a local model folder with config.json; download the model once "
            f"elsewhere (e.g. huggingface-cli download <model> --local-dir <folder>) and point text.vlm_path at it"
        )
    return path


def vlm_model_id(text_cfg: TextConfig) -> str:
    """Cache identity of the VLM describer: folder name, model fingerprint and answer length (no model loaded).

    Raises:
        DescriberError: without a usable ``text.vlm_path``.
    """
    path = vlm_folder(text_cfg)
    return f"vlm-{safe_name(path.name)}-{model_fingerprint(path)}-greedy{text_cfg.vlm_max_new_tokens}"


class VLMDescriber:
    """A local vision-language model asked each template's ``vlm_prompt`` (batched, greedy).

    Args:
        text_cfg: ``vlm_path``, ``vlm_max_new_tokens`` and ``vlm_batch_size``.
        device: where the model runs; default CUDA when present, else CPU.
    """

    name = "vlm"

    def __init__(self, text_cfg: TextConfig, device: torch.device | None = None) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.path = vlm_folder(text_cfg)
        self.model_id = vlm_model_id(text_cfg)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.max_new_tokens = text_cfg.vlm_max_new_tokens
        self.batch_size = text_cfg.vlm_batch_size
        try:
            self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
            self.model = AutoModelForImageTextToText.from_pretrained(
                self.path, local_files_only=True, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise DescriberError(f"text.vlm_path {str(self.path)!r}: cannot load a processor and an "
                                 f"image-text-to-text model from it ({exc})") from None
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # batched decoder-only generation continues from the right edge
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token

    def _prompt(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    @torch.inference_mode()
    def describe(self, pairs: Sequence[tuple[TextItem, Template]], context: Mapping[str, str]) -> list[str]:
        """Generate one answer per (item, template) pair, ``vlm_batch_size`` at a time."""
        from PIL import Image

        out: list[str] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            images = []
            for item, _ in chunk:
                image, _ = check_item(item.image, item.region, f"image {item.id!r}")
                rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
                images.append(Image.fromarray(rgb))
            prompts = [self._prompt(t.prompt(context)) for _, t in chunk]
            inputs = self.processor(images=images, text=prompts, padding=True, return_tensors="pt").to(self.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            generated = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
            new = generated[:, inputs["input_ids"].shape[1]:]
            out.extend(" ".join(t.split()) for t in self.processor.batch_decode(new, skip_special_tokens=True))
        return out


__all__ = ["VLMDescriber", "vlm_folder", "vlm_model_id"]
