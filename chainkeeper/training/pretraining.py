"""Language-model pre-training: continue an encoder (masked LM) or a decoder (causal LM)
on unlabelled text, or build a small model from scratch with a tokenizer trained on the
corpus, so a team with no base model still goes through the chain.

The result is a plain Hugging Face model folder (``config.json``, ``model.safetensors``,
the tokenizer files): ``TextClassifier.from_base`` and ``TokenTagger.from_base`` load
its encoder as the base of a fine-tuning run (``AutoModel`` takes the ``bert.`` weights
of a ``BertForMaskedLM`` and leaves the prediction head aside).

Masking follows BERT: 15 % of the non-special tokens are chosen (``mlm_probability``);
of those, 80 % become ``[MASK]``, 10 % a random token, 10 % stay; only the chosen ones
are scored. The masks are drawn from PyTorch's global generator, which the loop seeds
and checkpoints, so a resumed run masks as an uninterrupted one would.

Training runs the one loop (``loop.fit``); only the loss of a batch is new here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.config import ScratchModel, TrainConfig
from chainkeeper.training.loop import (
    TrainResult,
    fit,
    pad_batch,
    sample_indices,
    seed_everything,
    tokenize_once,
)

__all__ = ["IGNORE", "Objective", "build_scratch_model", "build_tokenizer", "evaluate_language_model",
           "is_decoder_folder", "load_language_model", "mask_tokens", "save_language_model", "train_language_model"]

IGNORE = -100  # positions the loss skips (unmasked tokens, padding)
Objective = Literal["masked-lm", "causal-lm"]
# Special tokens of the tokenizers trained here, in id order.
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BPE_SPECIAL = "<|endoftext|>"


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # unannotated in transformers
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers


# --- tokenizers ----------------------------------------------------------------------


def build_tokenizer(texts: Iterable[str], kind: Literal["wordpiece", "bpe"], vocab_size: int,
                    max_length: int) -> PreTrainedTokenizerBase:
    """Train a tokenizer on the corpus with the ``tokenizers`` library.

    Args:
        texts: the training texts.
        kind: ``wordpiece`` (BERT-style, lower-cased, ``[CLS] … [SEP]``) or ``bpe``
            (byte-level, GPT-2 style, nothing unknown).
        vocab_size: the largest vocabulary to learn (a small corpus gives fewer).
        max_length: recorded as ``model_max_length``.

    Returns:
        A fast Hugging Face tokenizer (saved with ``save_pretrained``, loaded back by
        ``AutoTokenizer``).
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    # BertTokenizerFast: the fast class in transformers 4; an alias of BertTokenizer that
    # transformers 5 loads lazily and leaves out of its type information.
    from transformers import (  # type: ignore[attr-defined]  # BertTokenizerFast, see above
        BertTokenizerFast,
        PreTrainedTokenizerFast,
    )

    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size,
                                                                 special_tokens=list(WORDPIECE_SPECIALS)))
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        tok.decoder = decoders.WordPiece()
        wordpiece: PreTrainedTokenizerBase = BertTokenizerFast(
            tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
            mask_token="[MASK]", model_max_length=max_length)
        return wordpiece
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BPE_SPECIAL],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # its __init__ is unannotated in transformers
        tokenizer_object=tok, bos_token=BPE_SPECIAL, eos_token=BPE_SPECIAL, unk_token=BPE_SPECIAL,
        pad_token=BPE_SPECIAL, model_max_length=max_length)


# --- models ----------------------------------------------------------------------------


def build_scratch_model(tokenizer: PreTrainedTokenizerBase, objective: Objective, spec: ScratchModel,
                        max_length: int) -> PreTrainedModel:
    """A randomly initialised BERT (masked LM) or GPT-2 (causal LM) of the given size.

    Args:
        tokenizer: sets the vocabulary size and the special ids.
        spec: layers, heads, hidden and feed-forward sizes.
        max_length: the model's position limit.
    """
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    if objective == "masked-lm":
        return BertForMaskedLM(BertConfig(
            vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads, intermediate_size=spec.intermediate_size,
            max_position_embeddings=max_length, pad_token_id=tokenizer.pad_token_id))
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_embd=spec.hidden_size, n_layer=spec.layers, n_head=spec.heads,
        n_inner=spec.intermediate_size, n_positions=max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def is_decoder_folder(folder: Path) -> bool:
    """Whether a model folder holds a decoder (its ``architectures`` name a causal LM).

    Args:
        folder: a Hugging Face model folder with ``config.json``.
    """
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    names = config.get("architectures") or []
    return bool(config.get("is_decoder")) or any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names)


def load_language_model(folder: Path, objective: Objective, *, dropout: float | None = None
                        ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model folder as a masked or causal language model, to continue its pre-training
    (an encoder saved without its MLM head gets a fresh one).

    Raises:
        InvalidInput: the folder's architecture cannot do this objective (e.g. masked
            LM on a decoder).
    """
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoTokenizer,
    )

    _quiet()
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if dropout is not None:
        for key in ("hidden_dropout_prob", "resid_pdrop"):
            if hasattr(config, key):
                setattr(config, key, dropout)
    auto = AutoModelForMaskedLM if objective == "masked-lm" else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(folder, config=config, local_files_only=True)
    except ValueError as exc:
        raise InvalidInput(f"The model in {folder} ({config.model_type}) cannot be trained as a {objective} "
                           f"model: {exc}".split("\n")[0],
                           hint="Use masked-lm for an encoder (BERT-like) and causal-lm "
                                "for a decoder (GPT-like).") from None
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token_id is None:  # GPT-2 style tokenizers have no padding token
        tokenizer.pad_token = tokenizer.eos_token
    if objective == "masked-lm" and tokenizer.mask_token_id is None:
        raise InvalidInput(f"The tokenizer in {folder} has no mask token; masked-LM training needs one.",
                           hint="Use causal-lm, or a BERT-style tokenizer with [MASK].")
    return model, tokenizer


def save_language_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> Path:
    """Write the model and its tokenizer as a Hugging Face folder (safetensors)."""
    _quiet()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


# --- the loss of one batch ---------------------------------------------------------------


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int,
                probability: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: the model's inputs and the labels it is scored on.

    Args:
        input_ids: token ids of shape (b, t).
        special: True where a token may not be chosen (padding, [CLS], [SEP]), (b, t).
        mask_id: the ``[MASK]`` id.
        vocab_size: random replacements are drawn below it.
        probability: the share of eligible tokens chosen.

    Returns:
        ``(inputs, labels)``, both (b, t): labels hold the original id where a token
        was chosen and ``IGNORE`` elsewhere. At least one token is chosen when any is
        eligible, so the loss is never a mean over nothing.
    """
    chosen = torch.bernoulli(torch.full(input_ids.shape, probability)).bool() & ~special
    if not chosen.any() and (~special).any():
        first = (~special).nonzero()[0]
        chosen[first[0], first[1]] = True
    labels = input_ids.masked_fill(~chosen, IGNORE)
    as_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8)).bool() & chosen
    as_random = torch.bernoulli(torch.full(input_ids.shape, 0.5)).bool() & chosen & ~as_mask
    inputs = input_ids.masked_fill(as_mask, mask_id)
    inputs = torch.where(as_random, torch.randint(vocab_size, input_ids.shape), inputs)
    return inputs, labels


def train_language_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                         config: TrainConfig, objective: Objective, **hooks: Any) -> TrainResult:
    """Pre-train ``model`` in place on raw texts.

    Args:
        model: a ``…ForMaskedLM`` or ``…ForCausalLM`` model.
        texts: the corpus (``config.limit_train`` samples it); texts longer than
            ``config.max_length`` tokens are truncated.
        objective: ``masked-lm`` or ``causal-lm``.
        **hooks: ``on_step``, ``should_stop``, ``on_eval``, ``on_checkpoint``, ``resume``
            (see ``loop.fit``).

    Raises:
        InvalidInput: no texts, or no text with a token to predict.
    """
    if not texts:
        raise InvalidInput("There are no training texts.", hint="Check the dataset version's train split.")
    seed_everything(config.seed)
    keep = sample_indices(len(texts), config.limit_train, config.seed)
    token_ids = [ids for ids in tokenize_once(tokenizer, [texts[i] for i in keep], config.max_length) if len(ids) > 1]
    if not token_ids:
        raise InvalidInput("No training text has more than one token.", hint="Check the dataset version's texts.")
    pad_id = int(tokenizer.pad_token_id)
    special_ids = torch.as_tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    vocab_size = _vocab_size(model)

    def batch_loss(batch: list[int]) -> torch.Tensor:
        input_ids, attention_mask = pad_batch([token_ids[i] for i in batch], pad_id)  # (b, t)
        if objective == "masked-lm":
            special = torch.isin(input_ids, special_ids) | (attention_mask == 0)
            inputs, labels = mask_tokens(input_ids, special, int(tokenizer.mask_token_id), vocab_size,
                                         config.mlm_probability)
        else:  # the model shifts the labels by one itself: each token predicts the next
            inputs, labels = input_ids, input_ids.masked_fill(attention_mask == 0, IGNORE)
        loss: torch.Tensor = model(input_ids=inputs, attention_mask=attention_mask, labels=labels).loss
        return loss

    return fit(model, [len(ids) for ids in token_ids], batch_loss, config, **hooks)


def _vocab_size(model: PreTrainedModel) -> int:
    """Rows of the model's input embedding (transformers declares it a plain ``nn.Module``)."""
    embeddings = cast(torch.nn.Embedding, model.get_input_embeddings())
    return int(embeddings.weight.shape[0])


@torch.inference_mode()
def evaluate_language_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *,
                            objective: Objective, max_length: int, mlm_probability: float = 0.15,
                            batch_size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Mean loss per scored token on held-out texts, and its perplexity (``exp(loss)``).

    Masks are drawn from a generator seeded with ``seed`` inside a forked RNG, so two
    evaluations of one model agree and training's random stream is left as it was.

    Returns:
        ``{"loss", "perplexity", "texts", "tokens"}`` (``tokens``: how many were scored).
    """
    import math

    model.eval()  # type: ignore[no-untyped-call]  # PreTrainedModel.eval is unannotated in transformers
    token_ids = [ids for ids in tokenize_once(tokenizer, list(texts), max_length) if len(ids) > 1]
    if not token_ids:
        return {"loss": float("nan"), "perplexity": float("nan"), "texts": 0, "tokens": 0}
    pad_id = int(tokenizer.pad_token_id)
    special_ids = torch.as_tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    vocab_size = _vocab_size(model)
    total, scored = 0.0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(token_ids), batch_size):
            input_ids, attention_mask = pad_batch(token_ids[start:start + batch_size], pad_id)
            if objective == "masked-lm":
                special = torch.isin(input_ids, special_ids) | (attention_mask == 0)
                inputs, labels = mask_tokens(input_ids, special, int(tokenizer.mask_token_id), vocab_size,
                                             mlm_probability)
                count = int((labels != IGNORE).sum())
            else:
                inputs, labels = input_ids, input_ids.masked_fill(attention_mask == 0, IGNORE)
                count = int(attention_mask[:, 1:].sum())  # each token after the first is predicted once
            loss = model(input_ids=inputs, attention_mask=attention_mask, labels=labels).loss
            total += float(loss) * count
            scored += count
    mean = total / max(scored, 1)
    return {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "texts": len(token_ids), "tokens": scored}
