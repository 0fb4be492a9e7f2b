/* longmix contracts shared by server and client: constants of the batch wire format v1
 * (proto/WIRE.md), the index on-disk format v1 (proto/INDEX.md) and the HTTP API
 * (proto/HTTP.md). Layout offsets are in bytes; every integer is little endian. */
#ifndef LMX_PROTO_H
#define LMX_PROTO_H

/* ---- Batch wire format v1 (proto/WIRE.md) ---- */
#define LMX_WIRE_MAGIC "LMXBATCH"
#define LMX_WIRE_VERSION 1
#define LMX_WIRE_HEADER_SIZE 96
#define LMX_WIRE_FLAG_CU_SEQLENS 1u
#define LMX_WIRE_SPAN_SIZE 32
#define LMX_PLAN_ID_BYTES 16

/* Header field offsets */
#define LMX_WH_MAGIC 0        /* 8 bytes "LMXBATCH" */
#define LMX_WH_VERSION 8      /* u16 */
#define LMX_WH_HEADER_SIZE 10 /* u16 */
#define LMX_WH_FLAGS 12       /* u32 */
#define LMX_WH_PLAN_ID 16     /* 16 bytes */
#define LMX_WH_STEP 32        /* u64 */
#define LMX_WH_RANK 40        /* u32 */
#define LMX_WH_WORLD 44       /* u32 */
#define LMX_WH_SEQ_LEN 48     /* u32 */
#define LMX_WH_N_SEQS 52      /* u32 */
#define LMX_WH_TOKEN_BYTES 56 /* u32: 2 or 4 */
#define LMX_WH_N_DOMAINS 60   /* u32 */
#define LMX_WH_N_SPANS 64     /* u32 */
#define LMX_WH_N_CU 68        /* u32 */
#define LMX_WH_TOTAL_SIZE 72  /* u64: size of the whole uncompressed body */
/* v1: 80..95 reserved, zero. v2 (context-parallel slices with model-ready fields, WIRE.md): */
#define LMX_WH_CP_RANK 80      /* u32 */
#define LMX_WH_CP_SIZE 84      /* u32 */
#define LMX_WH_IGNORE_INDEX 88 /* i32: the label of positions without a target */
/* 92..95: v2 reserved, zero; v3: */
#define LMX_WH_CP_LAYOUT 92 /* u32: LMX_CP_ZIGZAG or LMX_CP_THD */

/* Wire v2: asked for with cp_rank/cp_size on the batches route; v1 stays the default. */
#define LMX_WIRE_VERSION_CP 2
#define LMX_MAX_CP_SIZE (1u << 16)

/* Wire v3: v2 for plans with pad_multiple > 1 (every document padded; WIRE.md "Wire v3"), any
 * request; adds the real cu_seqlens beside the padded ones and the CP layout. */
#define LMX_WIRE_VERSION_PAD 3
#define LMX_CP_ZIGZAG 0 /* whole-sequence zigzag (Megatron get_batch_on_this_cp_rank) */
#define LMX_CP_THD 1    /* per document (Transformer Engine THD, cu_seqlens_padded) */

/* Limits a reader enforces before trusting any size (and a server never exceeds). */
#define LMX_MAX_SEQ_LEN (1u << 24)
#define LMX_MAX_SEQS_PER_BATCH (1u << 16)
#define LMX_MAX_DOMAINS 4096
#define LMX_MAX_DOMAIN_NAME 255

/* The paper's long/short boundary: a document of at least this many tokens is "long". The index
 * statistics (long_tokens) are fixed at this value; plans default to it (long_threshold). */
#define LMX_LONG_THRESHOLD 4096

/* ---- Index on-disk format v1 (proto/INDEX.md) ---- */
#define LMX_INDEX_FORMAT "longmix-index"
#define LMX_INDEX_VERSION 1
#define LMX_INDEX_MANIFEST "manifest.json"
#define LMX_SHARD_MAGIC "LMXSHARD"
#define LMX_SHARD_VERSION 1
#define LMX_SHARD_HEADER_SIZE 128
#define LMX_SHARD_DOC_SIZE 32

#define LMX_SH_MAGIC 0           /* 8 bytes "LMXSHARD" */
#define LMX_SH_VERSION 8         /* u32 */
#define LMX_SH_TOKEN_BYTES 12    /* u32: 2 or 4 */
#define LMX_SH_N_DOCS 16         /* u64 */
#define LMX_SH_N_TOKENS 24       /* u64 */
#define LMX_SH_TOKENS_OFFSET 32  /* u64 */
#define LMX_SH_DOCS_OFFSET 40    /* u64 */
#define LMX_SH_STRINGS_OFFSET 48 /* u64 */
#define LMX_SH_N_STRINGS 56      /* u64 */
#define LMX_SH_FILE_SIZE 64      /* u64 */
#define LMX_SH_N_DOMAINS 72      /* u32: the first n_domains strings are domain names */
/* 76..79 reserved, zero */
#define LMX_SH_IDS_OFFSET 80     /* u64: the optional ids section (--id-field), 0 = none */
/* 88..127 reserved, zero */

/* Document record (32 bytes) */
#define LMX_SD_TOKEN_START 0 /* u64: index of the first token in the shard's token array */
#define LMX_SD_N_TOKENS 8    /* u64 */
#define LMX_SD_DOMAIN 16     /* u32: string index of the domain name */
#define LMX_SD_SOURCE 20     /* u32: string index of the source path */
#define LMX_SD_LINE 24       /* u64: 1-based line in the source, 0 for one-document files */

/* Length buckets of the statistics (token-weighted by document length, K = 1024). */
#define LMX_N_BUCKETS 9
#define LMX_BUCKET_NAMES \
    { "0-1K", "1K-2K", "2K-4K", "4K-8K", "8K-16K", "16K-32K", "32K-64K", "64K-128K", "128K+" }

/* ---- HTTP (proto/HTTP.md) ---- */
#define LMX_MEDIA_BATCH "application/x-longmix-batch"
#define LMX_HDR_DIGEST "X-Longmix-Digest"
#define LMX_HDR_PLAN_ID "X-Longmix-Plan-Id"
#define LMX_DIGEST_PREFIX "blake2b-256="

#endif
