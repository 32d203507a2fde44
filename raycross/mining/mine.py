"""`mine_hard_negatives`: the public entry point (validation, embedding cache, runner choice, output)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from raycross.mining.blocks import BlockContext, ResultCollector
from raycross.mining.encoders import EncoderSpec
from raycross.mining.inputs import prepare_inputs
from raycross.mining.options import EXECUTIONS, INDEX_TYPES, MiningOptions
from raycross.mining.output import iter_output_batches, output_schema, to_hf_dataset, write_parquet
from raycross.mining.plan import EmbeddingCache, MiningRun
from raycross.mining.stats import MiningStatistics, compute_statistics

logger = logging.getLogger(__name__)

AUTO_RAY_MIN_TEXTS = 100_000
AUTO_RAY_MIN_CPUS = 8


def _check_cross_encoder(cross_encoder: Any) -> None:
    if cross_encoder is None:
        return
    if isinstance(cross_encoder, (str, os.PathLike)):
        config_path = Path(cross_encoder) / "config.json"
        if config_path.is_file():
            config = json.loads(config_path.read_text())
            heads = [a for a in config.get("architectures") or [] if a.endswith("ForSequenceClassification")]
            if heads and len(config.get("id2label") or {"0": 0}) != 1:
                raise ValueError(
                    f"cross_encoder={str(cross_encoder)!r}: expected a 1-label model, found {len(config['id2label'])} labels"
                )
        return
    if not hasattr(cross_encoder, "predict"):
        raise TypeError(
            f"cross_encoder: expected a CrossEncoder, a path or hub id, found {type(cross_encoder).__name__}"
        )
    if getattr(cross_encoder, "num_labels", 1) != 1:
        raise ValueError(f"cross_encoder: expected a 1-label model, found num_labels={cross_encoder.num_labels}")


def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, found {value!r}")


def _check_settings(
    batch_size: Any,
    faiss_batch_size: Any,
    num_workers: Any,
    cross_encoder_batch_size: Any,
    ivf_nprobe: Any,
    ivf_nlist: Any,
    execution: Any,
    index_type: Any,
    output_path: Any,
) -> None:
    """Check the execution settings (the mining options are checked by MiningOptions.create)."""
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("faiss_batch_size", faiss_batch_size)
    _check_positive_int("num_workers", num_workers, allow_none=True)
    _check_positive_int("cross_encoder_batch_size", cross_encoder_batch_size, allow_none=True)
    _check_positive_int("ivf_nprobe", ivf_nprobe)
    _check_positive_int("ivf_nlist", ivf_nlist, allow_none=True)
    if execution not in EXECUTIONS:
        raise ValueError(f"execution: expected one of {EXECUTIONS}, found {execution!r}")
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type: expected one of {INDEX_TYPES}, found {index_type!r}")
    if output_path is not None and Path(output_path).is_dir() and any(Path(output_path).glob("part-*.parquet")):
        raise ValueError(
            f"output_path={str(output_path)!r} already holds part-*.parquet files; pass an empty directory"
        )


def _choose_execution(execution: str, use_multi_process: Any, n_texts: int) -> str:
    if execution != "auto":
        return execution
    import ray

    if use_multi_process or ray.is_initialized() or os.environ.get("RAY_ADDRESS"):
        return "ray"
    # measured (benchmarks/RESULTS.md): on a 2-core machine the in-process runner mines 100k queries
    # against 117k texts faster than the actor pools and in a third of the memory; pools pay off with
    # several accelerators or many cores
    if n_texts >= AUTO_RAY_MIN_TEXTS and (_gpu_count() > 1 or (os.cpu_count() or 1) >= AUTO_RAY_MIN_CPUS):
        return "ray"
    return "local"


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def mine_hard_negatives(
    dataset: Any,
    model: Any,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: Any = None,
    cross_encoder: Any = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["random", "top"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet",
    output_scores: bool = False,
    batch_size: int = 32,
    faiss_batch_size: int = 16384,
    use_faiss: bool | None = None,
    use_multi_process: bool | list[str] = False,
    verbose: bool = True,
    cache_folder: str | os.PathLike | None = None,
    as_triplets: bool | None = None,
    margin: float | None = None,
    *,
    seed: int = 0,
    execution: Literal["auto", "ray", "local"] = "auto",
    num_workers: int | None = None,
    use_gpu: bool | None = None,
    index_type: Literal["flat", "ivf"] = "flat",
    ivf_nlist: int | None = None,
    ivf_nprobe: int = 16,
    cross_encoder_batch_size: int | None = None,
    output_path: str | os.PathLike | None = None,
    return_statistics: bool = False,
) -> Any:
    """Add hard negatives to (anchor, positive) pairs, with the semantics of sentence-transformers'
    `mine_hard_negatives`, distributed over Ray Data and with bounded memory.

    Each unique anchor is embedded and searched against the corpus (the given `corpus` plus the positives,
    deduplicated by text); candidates that are positives (unless `include_positives`) or fail a filter
    are dropped; the survivors are ranked, the first `range_min` skipped and `num_negatives` taken from
    the top or sampled at random (seeded) among ranks [range_min, range_max). With a `cross_encoder` and
    any margin/score filter, candidates and positives are rescored by it first (as in the anchor).

    Args:
        dataset: (anchor, positive) pairs: HF Dataset, Ray Dataset, pyarrow Table, pandas DataFrame, dict of
            columns, list of dicts, or parquet/json/csv paths. Repeated anchors = several positives.
        model: a raycross `Embedder`, a model path or hub id (loaded as an Embedder in each worker), a
            sentence-transformers model, or a callable `list[str] -> array (n, dim)`. Embeddings are L2-normalized
            and compared by inner product (cosine similarity).
        anchor_column_name, positive_column_name: default to the first and second columns.
        corpus: extra candidate documents (list of str / Arrow array) besides the positives.
        cross_encoder: a CrossEncoder (raycross or sentence-transformers) or its path, used to rescore.
        range_min, range_max: candidate rank window; range_max defaults to range_min + num_negatives +
            max positives (x10 num_negatives when a margin or max_score, or min_score with a cross-encoder, is set).
        max_score, min_score: drop candidates scoring above / below.
        absolute_margin: drop candidates with ``score + margin > positive score`` (a negative margin keeps
            candidates scoring up to ``|margin|`` above the positive, as in sentence-transformers).
        relative_margin: drop candidates with ``score > p - |p| * margin`` (sign-safe; negative values allowed).
            With several positives, p is the smallest positive score.
        num_negatives: negatives per anchor. sampling_strategy: "top" or "random".
        query_prompt, query_prompt_name, corpus_prompt, corpus_prompt_name: prompts for anchors / corpus.
        include_positives: keep positives among the candidates (forces output_format="n-tuple").
        output_format: "triplet", "n-tuple", "labeled-pair" or "labeled-list" (columns as the anchor:
            "negative", "negative_1".., "label"/"score", "labels"/"scores").
        output_scores: add similarity scores ("scores" list, or "score"/"scores" instead of labels).
        batch_size: embedding batch size. faiss_batch_size: queries per search block (upper bound).
        use_faiss: None = FAISS when installed; False = numpy exact search. Both are exact for "flat".
        use_multi_process: accepted for compatibility; truthy selects the Ray runner under execution="auto".
        verbose: progress bars and the statistics table at INFO level (DEBUG otherwise).
        cache_folder: save/load ``query_embeddings_{hash}.npy`` and ``corpus_embeddings_{hash}.npy`` (the hash
            covers the model identity, the prompts and the texts).
        as_triplets, margin: deprecated aliases of output_format and absolute_margin.
        seed: seed of the random sampling (results do not depend on batching or worker count).
        execution: "ray" (Ray Data actor pools), "local" (this process), or "auto": Ray when Ray is
            initialized (or ``RAY_ADDRESS`` is set, as in a Ray job), or when the anchors plus corpus
            reach 100,000 texts on a machine with several GPUs or at least 8 CPUs.
        num_workers: actor pool size per stage (default: GPUs, else half the cluster CPUs, at most 8).
        use_gpu: GPU actors and GPU search (default: when the cluster has GPUs).
        index_type: "flat" (exact inner product) or "ivf" (approximate, for very large corpora;
            ivf_nlist lists, ivf_nprobe probed).
        cross_encoder_batch_size: batch size of the rescoring (default: batch_size).
        output_path: stream the rows to parquet files in this directory and return its path instead of a Dataset.
        return_statistics: return ``(result, MiningStatistics)``.

    Returns:
        An HF `datasets.Dataset` (or the parquet directory path with `output_path`); with
        `return_statistics`, a tuple (that, `MiningStatistics`).

    Example:
        >>> from raycross.mining import mine_hard_negatives
        >>> from raycross import Embedder
        >>> mined = mine_hard_negatives(pairs, Embedder("sentence-transformers/all-MiniLM-L6-v2"),  # doctest: +SKIP
        ...                             corpus=corpus, num_negatives=5, relative_margin=0.05)
        >>> mined.column_names  # doctest: +SKIP
        ['query', 'answer', 'negative']
    """
    # ---- validate everything before loading a model or starting an actor
    from raycross.data.iterable import check_not_iterable

    check_not_iterable(dataset, "dataset")
    check_not_iterable(corpus, "corpus")
    if as_triplets is not None:
        output_format = "triplet" if as_triplets else "n-tuple"
        logger.warning("as_triplets is deprecated; use output_format. Setting output_format=%r.", output_format)
    if output_format == "n-tuple-scores":
        logger.warning('output_format="n-tuple-scores" is deprecated; using "n-tuple" with output_scores=True.')
        output_format, output_scores = "n-tuple", True
    if margin is not None:
        logger.warning("margin is deprecated; use absolute_margin. Setting absolute_margin=%r.", margin)
        absolute_margin = margin
    opts = MiningOptions.create(
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        num_negatives=num_negatives,
        sampling_strategy=sampling_strategy,
        include_positives=include_positives,
        output_format=output_format,
        output_scores=output_scores,
        seed=seed,
    )
    _check_settings(
        batch_size=batch_size,
        faiss_batch_size=faiss_batch_size,
        num_workers=num_workers,
        cross_encoder_batch_size=cross_encoder_batch_size,
        ivf_nprobe=ivf_nprobe,
        ivf_nlist=ivf_nlist,
        execution=execution,
        index_type=index_type,
        output_path=output_path,
    )
    spec = EncoderSpec.create(model, query_prompt, query_prompt_name, corpus_prompt, corpus_prompt_name, batch_size)
    _check_cross_encoder(cross_encoder)
    inputs = prepare_inputs(dataset, anchor_column_name, positive_column_name, corpus)
    rescoring = cross_encoder is not None and opts.has_filters
    if cross_encoder is not None and not rescoring:
        logger.warning(
            "cross_encoder is only used to rescore when a margin, max_score or min_score is set (as in "
            "sentence-transformers); none is set, so the embedding scores are used."
        )
    opts = opts.with_range_max(inputs.max_positives, rescoring)
    if inputs.num_queries != inputs.num_rows:
        logger.info("Found %d unique queries out of %d total queries.", inputs.num_queries, inputs.num_rows)
    if inputs.max_positives > 1:
        logger.info("Found an average of %.3f positives per query.", inputs.mean_positives)
    run = MiningRun(
        opts=opts,
        inputs=inputs,
        spec=spec,
        cache=EmbeddingCache.create(cache_folder, spec, inputs),
        cross_encoder=cross_encoder if rescoring else None,
        batch_size=batch_size,
        rescore_batch_size=cross_encoder_batch_size or batch_size,
        max_block=faiss_batch_size,
        index_type=index_type,
        use_faiss=use_faiss,
        ivf_nlist=ivf_nlist,
        ivf_nprobe=ivf_nprobe,
        verbose=verbose,
    )

    # ---- embed, search, (rescore,) select: in this process or on Ray Data actor pools
    ctx = BlockContext.create(inputs, opts)
    collector = ResultCollector(inputs, opts)
    if _choose_execution(execution, use_multi_process, inputs.num_queries + len(inputs.corpus)) == "local":
        from raycross.mining.local import run_local

        run_local(run, ctx, collector, use_gpu=bool(use_gpu))
    else:
        import ray

        from raycross.mining.distributed import Resources, run_ray

        if not ray.is_initialized():
            logger.info("Starting a local Ray instance for mining (call ray.init() first to configure it)")
            from raycross.ray_connect import init_ray

            init_ray()
        run_ray(run, ctx, collector, Resources.detect(num_workers, use_gpu))
    collector.check_complete()

    # ---- statistics and output rows
    stats = compute_statistics(
        opts,
        inputs.pos_indptr,
        collector.pos_scores,
        collector.neg_scores,
        collector.skipped,
        inputs.num_rows,
        ctx.depth,
    )
    stats.log(logging.INFO if verbose else logging.DEBUG)
    batches = iter_output_batches(inputs, collector.neg_ids, collector.neg_scores, collector.pos_scores, opts)
    schema = output_schema(inputs, opts)
    if output_path is not None:
        write_parquet(batches, schema, output_path)
        result: Any = str(output_path)
    else:
        result = to_hf_dataset(batches, schema)
    return (result, stats) if return_statistics else result


__all__ = ["mine_hard_negatives", "MiningStatistics"]
