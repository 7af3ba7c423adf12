"""The transformers backend on the chosen device: load a local model folder, generate, stream.

No Japanese instruct LLM can be installed here, so ``--random`` builds a randomly initialised model of a
given shape (default: a 0.5B-class Qwen2-like decoder) into a temporary folder and times it: the
figures are speed only, the text is noise. With a real model folder, pass ``--model PATH``.
Run: python bench/bench_llm_backend.py --device cuda --random
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

log = logging.getLogger("bench")


def _random_model(folder: Path, hidden: int, layers: int) -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    corpus = ["HbA1c 6.8% は要受診ですか", "心電図の所見は", "CT の L3 骨格筋量", "胸部 X 線で心拡大"] * 50
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=1000, special_tokens=["<s>", "</s>", "<pad>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    config = Qwen2Config(vocab_size=151_936, hidden_size=hidden, intermediate_size=hidden * 4 - hidden // 3,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=2, max_position_embeddings=4096)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--random", action="store_true")
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()

    from dokuei.agent.llm import TransformersBackend

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            folder = Path(tmp)
            _random_model(folder, args.hidden, args.layers)
        t0 = time.perf_counter()
        backend = TransformersBackend(folder, device=args.device, max_new_tokens=args.new_tokens)
        load_s = time.perf_counter() - t0
        messages = [{"role": "system", "content": "dokuei"},
                    {"role": "user", "content": "HbA1c 6.8% は要受診ですか？ " * 20}]
        backend.model.generation_config.eos_token_id = None  # random weights: always generate the full length
        backend.chat(messages)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            backend.chat(messages)
            times.append(time.perf_counter() - t0)
        pieces = list(backend.stream(messages))
    params = sum(p.numel() for p in backend.model.parameters()) / 1e6
    log.info("device %s, %s model, %.0f M parameters (%s)", backend.device,
             "random-weight" if args.model is None else "real", params,
             "speed only, text is noise" if args.model is None else str(args.model))
    log.info("load %.2f s; generate %d tokens: median %.2f s (%.1f tokens/s); stream pieces %d",
             load_s, args.new_tokens, statistics.median(times), args.new_tokens / statistics.median(times),
             len(pieces))


if __name__ == "__main__":
    main()
