"""Byte-level BPE, the tokenizer of GPT-2 and of most language models since, written out; and what a tokenizer
changes for a language model: sequence length, the size of the embedding, and the loss you can compare.

    text ──UTF-8──▶ bytes 0..255 ──merges, in the order learned──▶ token ids ──concatenate──▶ bytes ──UTF-8──▶ text

Training (`train_bpe`): cut the text into chunks with GPT-2's pattern (a word with the space before it, a number, a
run of punctuation, a run of whitespace), so that no token spans two words; count each distinct chunk once with how
often it occurs. Then repeat: count the adjacent pairs of tokens inside the chunks (each chunk weighted by how often
it occurs, overlapping pairs included: "aaa" holds ("a", "a") twice), merge the most frequent pair into a new token
everywhere (left to right, so "aaa" becomes "aa", "a"), until the vocabulary has `vocab_size` tokens. Ids 0..255 are
the bytes; merge k makes id 256 + k.

Ties: of equally frequent pairs the one that comes first is merged, comparing the first tokens, then the second, in
the order of the byte-level alphabet (`BYTE_ORDER`: the printable bytes in byte order, then the rest), merged tokens
after the bytes, by id. Any fixed rule would do; this is the `tokenizers` library's, so that `library_bpe`, trained
with the same settings, learns the same merges in the same order. The two agree as long as no merge spells a token
the vocabulary already has (the library then reuses that token's id; here it would be a second token with the same
bytes): `BytePairTokenizer.repeated_tokens` says whether that happened; on Tiny Shakespeare up to 8192 tokens, never.

Encoding (`BytePairTokenizer.encode`): the same chunks; in each, starting from its bytes, merge the pair with the
lowest rank (learned first) until no pair of the chunk has been learned. Decoding: join the tokens' bytes.
"""

from __future__ import annotations

import json
import math
import operator
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import regex
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.corpus import CharCorpus, train_length
from labkit.modules import eval_mode
from labkit.validate import require_positive_int

__all__ = ["GPT2_SPLIT_PATTERN", "BYTE_ORDER", "byte_to_unicode", "split_chunks", "count_pairs", "merge_pair",
           "encode_chunk", "train_bpe", "BytePairTokenizer", "library_bpe", "library_merges", "library_ids",
           "split_text", "token_corpus", "text_cross_entropy", "bits_per_character", "TextScore", "score_text",
           "VocabRow", "vocab_size_sweep", "wordpiece_word", "visible_text"]

# GPT-2's pre-tokenizer: contractions, a word with the space before it, a number, punctuation, whitespace (a run of
# spaces leaves its last one to the word after it). \p{L} is any letter, \p{N} any digit, in any script.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

N_BYTES = 256


def _byte_table() -> tuple[tuple[int, ...], dict[int, str]]:
    """GPT-2's byte-to-unicode table: a printable byte stands for itself; the others (controls, space, 127..160,
    173) get the characters from U+0100 on, in byte order. BYTE_ORDER lists the bytes in the order of their
    stand-ins."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(N_BYTES) if b not in printable]
    table = {b: chr(b) for b in printable} | {b: chr(N_BYTES + n) for n, b in enumerate(rest)}
    return tuple(printable + rest), table


BYTE_ORDER, _BYTE_TO_UNICODE = _byte_table()
_UNICODE_TO_BYTE = {c: b for b, c in _BYTE_TO_UNICODE.items()}
_TIE_RANK = {b: i for i, b in enumerate(BYTE_ORDER)}  # a byte's place in the alphabet, for breaking ties


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte to a printable character standing for it ("Ġ" for a space, "Ċ" for a newline):
    how byte-level tokens are written as strings in the `tokenizers` library's vocabulary and merges."""
    return dict(_BYTE_TO_UNICODE)


_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}


def visible_text(piece: str) -> str:
    """A token's text with its whitespace drawn: "␣" for a space, "⏎" a newline, "⇥" a tab, "␍" a carriage
    return."""
    return "".join(_VISIBLE.get(c, c) for c in piece)


def split_chunks(text: str, pattern: str | None = GPT2_SPLIT_PATTERN) -> list[str]:
    """The chunks that BPE never merges across: `pattern`'s matches, in order, which together spell `text` (with
    GPT-2's pattern they always do); pattern None: the whole text is one chunk."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if pattern is None:
        return [text] if text else []
    return regex.findall(pattern, text)


def count_pairs(ids: Sequence[int]) -> Counter[tuple[int, int]]:
    """How often each adjacent pair occurs in `ids`, overlaps included: [1, 1, 1] holds (1, 1) twice."""
    return Counter(zip(ids, ids[1:]))


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair` replaced by `new_id`, left to right: (1, 1) in [1, 1, 1] → [new, 1]."""
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def encode_chunk(ids: Sequence[int], ranks: Mapping[tuple[int, int], int]) -> list[int]:
    """One chunk's byte ids → its tokens: merge the learned pair of lowest rank (`ranks`: pair → new id, which grows
    with the order learned) until no adjacent pair has been learned."""
    ids = list(ids)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, math.inf))
        if pair not in ranks:
            break
        ids = merge_pair(ids, pair, ranks[pair])
    return ids


def _tie_rank(token: int) -> int:
    """A token's place in the order that breaks ties: bytes by BYTE_ORDER, then merged tokens by id."""
    return _TIE_RANK[token] if token < N_BYTES else token


def _count_into(counts: Counter[tuple[int, int]], ids: Sequence[int], weight: int) -> None:
    """Add `weight` to the count of every adjacent pair of `ids` (a negative weight takes a chunk out); drop counts
    that reach zero, so that `counts` holds only pairs that occur."""
    for pair in zip(ids, ids[1:]):
        counts[pair] += weight
        if counts[pair] == 0:
            del counts[pair]


def train_bpe(text: str, vocab_size: int, *, min_frequency: int = 0, pattern: str | None = GPT2_SPLIT_PATTERN,
              progress: bool = True) -> BytePairTokenizer:
    """Learn byte-level BPE merges on `text` until the vocabulary has `vocab_size` tokens (256 bytes + merges), or no
    pair occurs `min_frequency` times (or at all). See the module's docstring for the rule, ties included.

    Only the chunks that hold the pair being merged are recounted, so a merge costs what those chunks cost.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty str, got {text!r:.40}")
    require_positive_int("vocab_size", vocab_size)
    if vocab_size < N_BYTES:
        raise ValueError(f"vocab_size must be at least {N_BYTES} (one token per byte), got {vocab_size}")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 0:
        raise ValueError(f"min_frequency must be an int >= 0, got {min_frequency!r}")
    frequency = Counter(split_chunks(text, pattern))  # each distinct chunk once, with how often it occurs
    chunks = [list(chunk.encode("utf-8")) for chunk in frequency]
    weights = list(frequency.values())
    counts: Counter[tuple[int, int]] = Counter()
    holding: defaultdict[tuple[int, int], set[int]] = defaultdict(set)  # pair → chunks it occurs (or occurred) in
    for i, chunk in enumerate(chunks):
        _count_into(counts, chunk, weights[i])
        for pair in zip(chunk, chunk[1:]):
            holding[pair].add(i)
    merges: list[tuple[int, int]] = []
    for new_id in tqdm(range(N_BYTES, vocab_size), desc="BPE merges", disable=not progress):
        if not counts:
            break
        pair = max(counts, key=lambda p: (counts[p], -_tie_rank(p[0]), -_tie_rank(p[1])))
        if counts[pair] < min_frequency:
            break
        merges.append(pair)
        for i in holding.pop(pair):
            _count_into(counts, chunks[i], -weights[i])
            chunks[i] = merge_pair(chunks[i], pair, new_id)
            _count_into(counts, chunks[i], weights[i])
            for new_pair in zip(chunks[i], chunks[i][1:]):
                holding[new_pair].add(i)
    return BytePairTokenizer(merges, pattern)


def _id_list(ids: Tensor | Sequence[int]) -> list[int]:
    """A 1-D integer tensor or a sequence of ints as a list of ints."""
    if isinstance(ids, Tensor):
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids must be a 1-D integer tensor (n,), got shape {tuple(ids.shape)} and {ids.dtype}")
        return ids.tolist()
    try:
        return [operator.index(i) for i in ids]
    except TypeError:
        raise TypeError(f"ids must be a tensor or a sequence of ints, got {list(ids)[:5]!r}") from None


class BytePairTokenizer:
    """Byte-level BPE: ids 0..255 are the bytes, id 256 + k the k-th merge, `merges[k]` = (left id, right id).

    Usable wherever labkit takes a CharTokenizer (`vocab_size`, `encode` → tensor, `decode`, `to_dict`), e.g. in a
    `CharCorpus` for `labkit.train.train` (see `token_corpus`). Encoding caches each distinct chunk.
    """

    def __init__(self, merges: Iterable[tuple[int, int]], pattern: str | None = GPT2_SPLIT_PATTERN) -> None:
        self.merges = [tuple(pair) for pair in merges]
        self.vocab = [bytes([b]) for b in range(N_BYTES)]  # id → the bytes it spells
        for new_id, pair in enumerate(self.merges, start=N_BYTES):
            if len(pair) != 2 or not all(isinstance(t, int) and 0 <= t < new_id for t in pair):
                raise ValueError(f"merge {new_id - N_BYTES} must be a pair of ids below {new_id}, got {pair!r}")
            self.vocab.append(self.vocab[pair[0]] + self.vocab[pair[1]])
        self.ranks = {pair: new_id for new_id, pair in enumerate(self.merges, start=N_BYTES)}
        self.pattern = pattern
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        split = "GPT-2's pattern" if self.pattern == GPT2_SPLIT_PATTERN else repr(self.pattern)
        return f"BytePairTokenizer(vocab_size={self.vocab_size}, {len(self.merges)} merges, split by {split})"

    @property
    def repeated_tokens(self) -> list[bytes]:
        """The token strings that two ids spell (empty unless a merge rebuilt an existing token)."""
        return [token for token, n in Counter(self.vocab).items() if n > 1]

    def encode_ids(self, text: str) -> list[int]:
        """text → its token ids, as a list."""
        ids: list[int] = []
        for chunk in split_chunks(text, self.pattern):
            if chunk not in self._cache:
                self._cache[chunk] = encode_chunk(chunk.encode("utf-8"), self.ranks)
            ids.extend(self._cache[chunk])
        return ids

    def encode(self, text: str) -> Tensor:
        """text → (n_tokens,) long ids. Any text encodes: every character is made of bytes."""
        return torch.tensor(self.encode_ids(text), dtype=torch.long)

    def decode_bytes(self, ids: Tensor | Sequence[int]) -> bytes:
        """(n,) ids → the bytes they spell; ids outside 0..vocab_size-1 raise ValueError."""
        values = _id_list(ids)
        bad = [(p, i) for p, i in enumerate(values) if not 0 <= i < self.vocab_size]
        if bad:
            shown = ", ".join(f"{i} at position {p}" for p, i in bad[:5])
            raise ValueError(f"ids must lie in 0..{self.vocab_size - 1} (vocab_size={self.vocab_size}), got {shown}")
        return b"".join(self.vocab[i] for i in values)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """(n,) ids → the text; bytes that are not valid UTF-8 (a character cut between tokens, say a sample's last
        token) become "�"."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def pieces(self, ids: Tensor | Sequence[int]) -> list[str]:
        """Each token as text, for showing where a text was cut ("�" where a token holds part of a character)."""
        return [self.decode([i]) for i in _id_list(ids)]

    def with_vocab_size(self, vocab_size: int) -> BytePairTokenizer:
        """The tokenizer with only the first vocab_size - 256 merges: what training to vocab_size would have given,
        since training adds one merge at a time and never revisits one."""
        require_positive_int("vocab_size", vocab_size)
        if not N_BYTES <= vocab_size <= self.vocab_size:
            raise ValueError(f"vocab_size must lie in {N_BYTES}..{self.vocab_size} (this tokenizer's), "
                             f"got {vocab_size}")
        return BytePairTokenizer(self.merges[:vocab_size - N_BYTES], self.pattern)

    def to_dict(self) -> dict:
        """A JSON-safe description, e.g. for a checkpoint's metadata."""
        return {"kind": "bpe", "merges": [list(pair) for pair in self.merges], "pattern": self.pattern}

    @classmethod
    def from_dict(cls, data: dict) -> BytePairTokenizer:
        """The tokenizer `to_dict` described."""
        if not isinstance(data, dict) or data.get("kind") != "bpe" or not isinstance(data.get("merges"), list):
            raise ValueError(f"data must be a dict like {{'kind': 'bpe', 'merges': [[a, b], ...], 'pattern': ...}}, "
                             f"got {data!r:.80}")
        return cls([tuple(pair) for pair in data["merges"]], data.get("pattern", GPT2_SPLIT_PATTERN))


# --- the same tokenizer from Hugging Face's `tokenizers` ----------------------------------------------------------

def library_bpe(text: str, vocab_size: int, *, min_frequency: int = 0) -> Tokenizer:
    """`tokenizers`' byte-level BPE trained on `text` with train_bpe's settings: GPT-2's pattern and byte-to-unicode
    table (the ByteLevel pre-tokenizer, no prefix space), every byte in the initial alphabet, `vocab_size` tokens
    at most, pairs rarer than `min_frequency` never merged, no special tokens. Returns a `tokenizers.Tokenizer`."""
    require_positive_int("vocab_size", vocab_size)
    if vocab_size < N_BYTES:
        raise ValueError(f"vocab_size must be at least {N_BYTES} (one token per byte), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tokenizer.train_from_iterator([text], trainer)
    return tokenizer


def _token_bytes(token: str) -> bytes:
    """A byte-level token written with GPT-2's stand-ins ("Ġthe") → its bytes (b" the")."""
    return bytes(_UNICODE_TO_BYTE[c] for c in token)


def library_merges(tokenizer: Tokenizer) -> list[tuple[bytes, bytes]]:
    """A `tokenizers` byte-level BPE's merges in rank order, each as the bytes of its two tokens."""
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    pairs = [m.split(" ") if isinstance(m, str) else m for m in merges]  # older versions write "a b"
    return [(_token_bytes(a), _token_bytes(b)) for a, b in pairs]


def library_ids(ours: BytePairTokenizer, tokenizer: Tokenizer) -> list[int]:
    """For each of our ids, the `tokenizers` id of the token that spells the same bytes (its vocabulary writes a
    token's bytes with GPT-2's stand-ins); a token it lacks raises ValueError."""
    vocab = tokenizer.get_vocab()
    ids = []
    for i, token in enumerate(ours.vocab):
        written = "".join(_BYTE_TO_UNICODE[b] for b in token)
        if written not in vocab:
            raise ValueError(f"our token {i} ({token!r}) is not in the library tokenizer's vocabulary")
        ids.append(vocab[written])
    return ids


# --- training a language model on tokens, and comparing it fairly --------------------------------------------------

def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """(train, val): the text cut where `labkit.corpus.train_val_split` cuts its characters (the first
    `train_length(n, val_fraction)` characters train), so that any tokenizer's model is measured on the same text."""
    if not isinstance(text, str) or len(text) < 4:
        raise ValueError(f"text must be a str of at least 4 characters, got {text!r:.40}")
    cut = train_length(len(text), val_fraction)
    return text[:cut], text[cut:]


def token_corpus(tokenizer: BytePairTokenizer, train_text: str, val_text: str) -> CharCorpus:
    """A corpus for `labkit.train.train` with `tokenizer`'s ids of each text (each encoded on its own)."""
    return CharCorpus(tokenizer, tokenizer.encode(train_text), tokenizer.encode(val_text))


@torch.no_grad()
def text_cross_entropy(model: nn.Module, ids: Tensor, block_size: int, *, batch_size: int = 32,
                       device: torch.device | str | None = None) -> Tensor:
    """(n - 1,) the model's cross-entropy in nats for each of ids[1:] (ids: (n,)), in eval mode: the ids are cut
    into consecutive windows of block_size + 1 tokens that overlap by one, so that every token is predicted once,
    from the tokens before it in its window."""
    if not isinstance(ids, Tensor) or ids.dim() != 1 or len(ids) < 2:
        raise ValueError(f"ids must be a 1-D tensor of at least 2 token ids, got {ids!r:.60}")
    require_positive_int("block_size", block_size)
    require_positive_int("batch_size", batch_size)
    device = device or next(model.parameters()).device
    n_full = (len(ids) - 1) // block_size
    windows = ids[:n_full * block_size + 1].unfold(0, block_size + 1, block_size)  # (n_full, block_size + 1)
    batches = list(windows.split(batch_size))
    if (len(ids) - 1) % block_size:
        batches.append(ids[n_full * block_size:][None])  # the last, shorter window: (1, t + 1)
    losses = []
    with eval_mode(model):
        for batch in batches:  # (b, t + 1)
            batch = batch.to(device)
            logits = model(batch[:, :-1]).float()  # (b, t, vocab)
            losses.append(F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="none").cpu())
    return torch.cat(losses)


def bits_per_character(token_nats: Tensor, n_characters: int) -> float:
    """Total cross-entropy (nats, summed over the tokens) / characters / ln 2: bits per character, comparable
    across tokenizers because the characters are the same whatever the tokens."""
    require_positive_int("n_characters", n_characters)
    return float(token_nats.sum()) / n_characters / math.log(2)


@dataclass(frozen=True)
class TextScore:
    """A model scored on one text: the tokens it predicted, the characters they spell, and its total nats."""

    tokens: int
    characters: int
    nats: float
    loss_per_token: float  # nats: what training prints, not comparable across tokenizers
    bits_per_character: float  # comparable across tokenizers


def score_text(model: nn.Module, tokenizer, text: str, *, batch_size: int = 32,
               device: torch.device | str | None = None) -> TextScore:
    """Encode `text` with `tokenizer` (anything with encode → tensor and decode), predict every token after the
    first with `text_cross_entropy`, and count the characters those tokens spell (the text less the first
    token's)."""
    ids = tokenizer.encode(text)
    nats = text_cross_entropy(model, ids, model.config.block_size, batch_size=batch_size, device=device)
    characters = len(text) - len(tokenizer.decode(ids[:1]))
    return TextScore(tokens=len(nats), characters=characters, nats=float(nats.sum()),
                     loss_per_token=float(nats.mean()), bits_per_character=bits_per_character(nats, characters))


@dataclass(frozen=True)
class VocabRow:
    """One vocabulary size measured on a text: its tokens, and the parameters its embedding and output layer take."""

    vocab_size: int
    tokens: int
    characters: int
    tokens_per_character: float
    characters_per_token: float
    embedding_parameters: int  # vocab_size · d_model, twice that with an untied output layer


def vocab_size_sweep(tokenizer: BytePairTokenizer, text: str, sizes: Iterable[int], *, d_model: int = 128,
                     tie_head: bool = False) -> list[VocabRow]:
    """`text` encoded with the first merges of `tokenizer` for each vocabulary size in `sizes` (each at most its
    vocab_size), and what each costs a model of width `d_model`."""
    require_positive_int("d_model", d_model)
    if not text:
        raise ValueError("text is empty: nothing to measure")
    rows = []
    for size in sizes:
        tokens = len(tokenizer.with_vocab_size(size).encode_ids(text))
        rows.append(VocabRow(size, tokens, len(text), tokens / len(text), len(text) / tokens,
                             size * d_model * (1 if tie_head else 2)))
    return rows


# --- WordPiece, BERT's tokenizer -------------------------------------------------------------------------------

def wordpiece_word(word: str, vocab: Mapping[str, int] | set[str], *, unk: str = "[UNK]", prefix: str = "##",
                   max_chars: int = 100) -> list[str]:
    """WordPiece's encoding of one word (already lower-cased and split off punctuation, as BERT's tokenizer does
    first): from the start, take the longest piece in `vocab` (a piece after the first carries `prefix`), then go
    on from where it ended; if at some point no piece fits, the whole word is `unk`, as is a word longer than
    `max_chars`."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                pieces.append(piece)
                start = end
                break
        else:
            return [unk]
    return pieces
