"""``official_jsonl`` source: the official AR-Omni training data, already tokenized, read as is.

``.jsonl`` files are pretrain shards (``discrete_code``, ``task``, ``response``); ``.parquet`` files are SFT
data (``input_ids``, ``labels``). See :mod:`aromni.training.data.official_jsonl` for the mapping. The ids must
fit the build's layout (normally ``aromni-7b``); a text tokenizer, when the build has one, is only used to
leave the ``USER:`` / ``GPT:`` prefixes out of the text spans.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from aromni.errors import InputError
from aromni.training.data.official_jsonl import pretrain_sample, sft_sample
from aromni.training.data.shards import Sample
from aromni.training.data.sources.base import (
    BadRecord,
    Chunk,
    EncodeContext,
    Item,
    Source,
    json_items,
    line_chunks,
)
from aromni.utils.io import JSONValue


class OfficialSource(Source):
    type_name = "official_jsonl"
    options = ("task",)
    default_group = None

    def __init__(self, index: int, cfg: Mapping[str, JSONValue], base: Path):
        super().__init__(index, cfg, base)
        self.sft_task = str(self.cfg.get("task", "sft"))

    def needs(self) -> set[str]:
        return set()

    def input_files(self) -> list[Path]:
        return self.expand((".jsonl", ".parquet"))

    def plan(self, chunk_size: int) -> list[Chunk]:
        import pyarrow.parquet as pq

        files = self.input_files()
        chunks = line_chunks(self, [f for f in files if f.suffix != ".parquet"], chunk_size)
        for f in (f for f in files if f.suffix == ".parquet"):
            try:
                meta = pq.ParquetFile(f).metadata
            except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
                raise InputError(f"{f}: not a readable parquet file ({e})", "fix or remove it") from None
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                if rows:
                    chunks.append(Chunk(self.chunk_id(len(chunks)), self.index, "rows", str(f), g, rows))
        return chunks

    def read(self, chunk: Chunk) -> Iterator[Item]:
        if chunk.kind == "lines":
            yield from json_items(chunk)
            return
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(chunk.path)
        missing = {"input_ids", "labels"} - set(pf.schema_arrow.names)
        if missing:
            for r in range(chunk.count):
                yield Item(
                    f"{chunk.path}#g{chunk.offset}r{r}",
                    error=BadRecord("bad_record", f"{chunk.path}: no column(s) {sorted(missing)}"),
                )
            return
        table = pf.read_row_group(chunk.offset, columns=["input_ids", "labels"])
        ids, labels = table["input_ids"].to_pylist(), table["labels"].to_pylist()
        for r, (i, lab) in enumerate(zip(ids, labels)):
            yield Item(f"{chunk.path}#g{chunk.offset}r{r}", {"input_ids": i, "labels": lab})

    def encode(self, item: Item, ctx: EncodeContext) -> list[tuple[str, Sample]]:
        p = item.payload
        split = self.split or "train"
        if "input_ids" in p and "labels" in p and "discrete_code" not in p:
            s = sft_sample(
                p["input_ids"],
                p["labels"],
                ctx.layout,
                task=self.sft_task,
                tokenizer=ctx.text,
                style=ctx.style,
                where=item.where,
                group=self.group,
            )
        else:
            s = pretrain_sample(
                p, ctx.layout, tokenizer=ctx.text, style=ctx.style, where=item.where, group=self.group
            )
        return [(split, s)]
