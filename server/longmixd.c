/* longmixd: the data node. Subcommands: index, verify, stats, doc, tokenize, serve, keygen, export. */
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmx_index.h"
#include "lmx_util.h"
#include "lmxd_config.h"
#include "lmxd_serve.h"

#include "cmd_tokenize.h"
#include "lmxd_export.h"

static const char usage_main[] =
    "usage: longmixd COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  index     tokenize corpora into an index        longmixd index --tokenizer FILE|bytes --out DIR INPUT...\n"
    "  verify    check every shard's BLAKE2b            longmixd verify DIR [--changed] [--scrub]\n"
    "  stats     index statistics                      longmixd stats DIR [--json]\n"
    "  doc       documents by id                       longmixd doc DIR ID... [--json]\n"
    "  tokenize  JSON Lines text -> ids                longmixd tokenize --tokenizer FILE [--threads N]\n"
    "  serve     the HTTP data service                 longmixd serve --config FILE [--listen HOST:PORT] [--index DIR]\n"
    "  keygen    a new access token and its hash       longmixd keygen [--json]\n"
    "  export    a plan's first steps to files         longmixd export --config FILE --plan NAME --steps N --format megatron|npy --out PREFIX\n"
    "\n"
    "`longmixd COMMAND --help` describes each command.\n";

static int fail(const char *cmd, const lmx_error *e)
{
    fprintf(stderr, "longmixd %s: %s\n", cmd, e->message[0] ? e->message : lmx_strerror(e->code));
    return 1;
}

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "longmixd %s: %s (see longmixd %s --help)\n", cmd, msg, cmd);
    return 2;
}

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

static int cmd_index(int argc, char **argv)
{
    static const char usage[] =
        "usage: longmixd index --tokenizer FILE|bytes --out DIR [--threads N] [--shard I/N]\n"
        "                      [--domain-field meta.redpajama_set_name] [--text-field text] [--id-field PATH]\n"
        "                      [--domain-from-path PATTERN] [--token-dtype T] [--on-error fail|skip] INPUT...\n"
        "       longmixd index --merge --out DIR SRC_DIR...\n"
        "\n"
        "INPUT is a JSON Lines file (.jsonl, .jsonl.gz, .json.gz, .jsonl.zst, .jsonl.zstd; one JSON document\n"
        "a line, text in \"text\"; compression detected from the file's magic bytes), a MosaicML MDS folder\n"
        "(index.json + shards, raw/.zstd/.gz; one document per sample), a Parquet file (.parquet; one\n"
        "document per row: the --text-field string column, or a list of token ids such as input_ids;\n"
        "struct members by dotted path), a .txt file (one document; domain =\n"
        "its folder's name), a folder (walked recursively), DOMAIN=PATH to force the domain, or\n"
        "DOMAIN=PREFIX for a Megatron-LM indexed dataset (PREFIX.bin + PREFIX.idx; one document per\n"
        "Megatron document). Pre-tokenized ids (Megatron, MDS, Parquet token columns) must be below the tokenizer's\n"
        "vocabulary size. One shard is written per input file (per folder of .txt files, per Megatron\n"
        "pair, per MDS folder); the manifest is written last.\n"
        "Re-running over the same inputs indexes only new or changed ones; a killed run can be re-run.\n"
        "\n"
        "Several machines: run `--shard I/N` with the same INPUTs on each (I = 0..N-1, 0-based, e.g.\n"
        "$SLURM_ARRAY_TASK_ID with --array=0-(N-1)), each into its own --out; the input files, sorted by\n"
        "path, are dealt round-robin (file k goes to slice k % N). Then `longmixd index --merge --out DIR\n"
        "SRC_DIR...` combines the slices without re-tokenizing (same tokenizer required); the result\n"
        "equals one run over all inputs (same documents, ids, statistics and index identity).\n"
        "\n"
        "  --tokenizer FILE|bytes  tokenizer.json, or the built-in byte tokenizer\n"
        "  --out DIR               index folder (created)\n"
        "  --threads N             parallel input files (default: 2)\n"
        "  --domain-field PATH     dotted field path of the domain (default meta.redpajama_set_name)\n"
        "  --text-field PATH       dotted field path of the text (default text; e.g. content), or of the\n"
        "                          token column of a pre-tokenized MDS input\n"
        "  --id-field PATH         dotted field path of a document id kept as provenance (longmixd doc\n"
        "                          shows it as doc_id); documents without one are indexed all the same\n"
        "  --domain-from-path PATTERN  domain from each input's path, e.g. 'data/{domain}/*.jsonl'\n"
        "                          ('*' and {domain} match within one path component; DOMAIN=PATH wins)\n"
        "  --token-dtype uint16|uint32|int32|int64  element type of MDS `bytes` token columns\n"
        "  --on-error fail|skip    (also --bad-input) a bad record (invalid JSON, no text, no domain,\n"
        "                          non-UTF-8 text, token id outside the vocabulary) or input (empty,\n"
        "                          unreadable, truncated or corrupt) fails the run\n"
        "                          (default) or is skipped, counted and reported\n"
        "  --progress / --no-progress  progress on stderr (default: when stderr is a terminal)\n"
        "  --shard I/N             index only slice I (0-based) of N of the input files\n"
        "  --merge                 merge the indexes SRC_DIR... into --out (no tokenizer needed)\n"
        "  --match-added-tokens    added/special token strings (\"<s>\", \"<|begin_of_text|>\") inside\n"
        "                          documents become their ids, exactly like HF encode(); by default they\n"
        "                          are plain text so a document cannot inject control tokens\n";
    lmx_index_options o = {0};
    o.threads = 2;
    o.domain_field = "meta.redpajama_set_name";
    o.progress = isatty(2);
    static const struct option lo[] = {{"tokenizer", 1, 0, 't'}, {"out", 1, 0, 'o'},        {"threads", 1, 0, 'j'},
                                       {"domain-field", 1, 0, 'd'}, {"on-error", 1, 0, 'e'}, {"progress", 0, 0, 'p'},
                                       {"no-progress", 0, 0, 'P'},  {"help", 0, 0, 'h'},     {"shard", 1, 0, 's'},
                                       {"merge", 0, 0, 'm'},        {"match-added-tokens", 0, 0, 'A'},
                                       {"text-field", 1, 0, 'T'},   {"id-field", 1, 0, 'I'},
                                       {"domain-from-path", 1, 0, 'D'}, {"bad-input", 1, 0, 'e'},
                                       {"token-dtype", 1, 0, 'y'},
                                       {0, 0, 0, 0}};
    int c, merge = 0;
    uint64_t u;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 't': o.tokenizer = optarg; break;
        case 'o': o.out_dir = optarg; break;
        case 'j':
            if (lmx__parse_u64(optarg, 256, &u) != 0 || u == 0)
                return usage_error("index", "--threads must be an integer in [1, 256]");
            o.threads = (int)u;
            break;
        case 'd': o.domain_field = optarg; break;
        case 'T': o.text_field = optarg; break;
        case 'I': o.id_field = optarg; break;
        case 'D': o.domain_from_path = optarg; break;
        case 'y': {
            static const char *const names[] = {"", "uint16", "uint32", "int32", "int64"};
            o.token_dtype = 0;
            for (int k = 1; k < 5; k++)
                if (strcmp(optarg, names[k]) == 0)
                    o.token_dtype = k;
            if (!o.token_dtype)
                return usage_error("index", "--token-dtype must be uint16, uint32, int32 or int64");
            break;
        }
        case 'A': o.match_added_tokens = 1; break;
        case 'e':
            if (strcmp(optarg, "fail") == 0)
                o.on_error = LMX_ON_ERROR_FAIL;
            else if (strcmp(optarg, "skip") == 0)
                o.on_error = LMX_ON_ERROR_SKIP;
            else
                return usage_error("index", "--on-error (--bad-input) must be fail or skip");
            break;
        case 'p': o.progress = 1; break;
        case 'P': o.progress = 0; break;
        case 's': {
            const char *slash = strchr(optarg, '/');
            uint64_t i = 0, n = 0;
            char head[32];
            if (!slash || (size_t)(slash - optarg) >= sizeof head)
                return usage_error("index", "--shard wants I/N, e.g. 0/4");
            memcpy(head, optarg, (size_t)(slash - optarg));
            head[slash - optarg] = '\0';
            if (lmx__parse_u64(head, UINT32_MAX, &i) != 0 || lmx__parse_u64(slash + 1, UINT32_MAX, &n) != 0 || n == 0 ||
                i >= n)
                return usage_error("index", "--shard I/N wants integers with 0 <= I < N (I is 0-based)");
            o.shard_index = (uint32_t)i;
            o.shard_count = (uint32_t)n;
            break;
        }
        case 'm': merge = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return usage_error("index", "unknown option");
        }
    }
    if (merge) {
        if (!o.out_dir)
            return usage_error("index", "--merge needs --out DIR");
        if (o.shard_count)
            return usage_error("index", "--merge and --shard do not go together");
        if (optind >= argc)
            return usage_error("index", "--merge needs at least one SRC_DIR");
        lmx_error e = {0};
        if (lmx__index_merge(o.out_dir, argv + optind, argc - optind, &e) != LMX_OK)
            return fail("index", &e);
        return 0;
    }
    if (!o.tokenizer)
        return usage_error("index", "--tokenizer is required (a tokenizer.json path or 'bytes')");
    if (!o.out_dir)
        return usage_error("index", "--out is required");
    if (optind >= argc)
        return usage_error("index", "no INPUT given");
    lmx_error e = {0};
    if (lmx__index_build(&o, argv + optind, argc - optind, &e) != LMX_OK)
        return fail("index", &e);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    static const char usage[] =
        "usage: longmixd verify DIR [--changed] [--threads N] [--scrub [--rate MB/s]] [--state-dir DIR]\n"
        "\n"
        "Recomputes shards' BLAKE2b-256 (on every core, or N threads) and compares them with the manifest.\n"
        "Exit 0 when all hold; otherwise one line per bad file on stderr and exit 1. Good shards are\n"
        "remembered in DIR/verified.json (or, for a read-only DIR, in --state-dir, like serve's state_dir),\n"
        "keyed by each file's size, inode, mtime and ctime: `serve` then reads only new or changed shards.\n"
        "  --changed      read only shards the record does not vouch for (what serve does at start)\n"
        "  --scrub        read everything from the disk (cached pages dropped first), at --rate MB/s\n"
        "                 (default 100; 0 = unlimited): finds bytes that rotted with no metadata change\n"
        "  --threads N    readers (default: online CPUs)\n";
    if (wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    static const struct option lo[] = {{"changed", 0, 0, 'c'}, {"threads", 1, 0, 't'}, {"scrub", 0, 0, 's'},
                                       {"rate", 1, 0, 'r'},    {"state-dir", 1, 0, 'd'}, {0, 0, 0, 0}};
    lmx_verify_options o = {0};
    int c, have_rate = 0;
    uint64_t u;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'c': o.changed_only = 1; break;
        case 's': o.scrub = 1; break;
        case 'd': o.state_dir = optarg; break;
        case 't':
            if (lmx__parse_u64(optarg, 256, &u) != 0 || u == 0)
                return usage_error("verify", "--threads must be an integer in [1, 256]");
            o.threads = (int)u;
            break;
        case 'r': {
            char *end;
            o.rate_mb = strtod(optarg, &end);
            if (!*optarg || *end || !(o.rate_mb >= 0) || o.rate_mb > 1e6)
                return usage_error("verify", "--rate must be a number of MB/s in [0, 1000000]");
            have_rate = 1;
            break;
        }
        default: return usage_error("verify", "unknown option");
        }
    }
    if (optind != argc - 1)
        return usage_error("verify", "want exactly one DIR");
    if (o.scrub && o.changed_only)
        return usage_error("verify", "--scrub reads everything; it does not go with --changed");
    if (have_rate && !o.scrub)
        return usage_error("verify", "--rate goes with --scrub");
    if (o.scrub && !have_rate)
        o.rate_mb = 100;
    const char *dir = argv[optind];
    lmx_error e = {0};
    lmx_index *ix = NULL;
    if (lmx__index_open(dir, &ix, &e) != LMX_OK)
        return fail("verify", &e);
    uint64_t n = lmx__index_n_docs(ix);
    /* Open checks per shard; a full run checks every document record too (--changed stays a
     * stat per vouched-for shard: records are also checked wherever they are read). */
    int rrc = o.changed_only ? LMX_OK : lmx__index_check_records(ix, &e);
    lmx__index_close(ix);
    if (rrc != LMX_OK)
        return fail("verify", &e);
    lmx_verify_report r;
    int rc = lmx__index_verify_run(dir, &o, &r, &e);
    fprintf(stderr, "longmixd verify: %zu shard(s): %zu read (%.1f MB in %.2f s), %zu remembered, %zu bad%s%s%s\n",
            r.shards, r.checked + r.bad, (double)r.bytes / 1e6, r.seconds, r.remembered, r.bad,
            r.record[0] || r.record_note[0] ? "; record: " : "", r.record_note[0] ? r.record_note : r.record, "");
    if (rc != LMX_OK)
        return fail("verify", &e);
    printf("ok: %s, %llu documents, every shard checksum%s holds\n", dir, (unsigned long long)n,
           o.changed_only ? "" : " and document record");
    return 0;
}

/* "tokenizer: ID" and "separators: bos ID "STR" per document | available, eos ..." (the plans'
 * defaults); strings JSON-escaped so a control character cannot break the line. */
static void print_separators(const lmx_index *ix)
{
    printf("tokenizer: %s\nseparators:", lmx__index_tokenizer_identity(ix));
    for (int k = 0; k < 2; k++) {
        uint32_t id = k ? lmx__index_eos(ix) : lmx__index_bos(ix);
        const char *tok = lmx__index_sep_token(ix, k);
        printf("%s %s ", k ? "," : "", k ? "eos" : "bos");
        if (id == UINT32_MAX) {
            fputs("none", stdout);
            continue;
        }
        json_t *js = json_string(tok ? tok : "");
        char *q = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        printf("%u %s %s", id, q ? q : "\"?\"",
               (k ? lmx__index_default_eos(ix) : lmx__index_default_bos(ix)) ? "per document" : "available (off by default)");
        free(q);
        json_decref(js);
    }
    putchar('\n');
}

static int cmd_stats(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        puts("usage: longmixd stats DIR [--json]\n\nPer-domain documents, tokens, long-document tokens (>= 4096) and\n"
             "token-weighted length buckets. --json prints the contract's JSON shape.");
        return 0;
    }
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (!dir)
            dir = argv[i];
        else
            return usage_error("stats", "want exactly one DIR");
    }
    if (!dir)
        return usage_error("stats", "want DIR");
    lmx_error e = {0};
    lmx_index *ix = NULL;
    if (lmx__index_open(dir, &ix, &e) != LMX_OK)
        return fail("stats", &e);
    if (json) {
        json_t *st = lmx__index_stats_json(ix);
        char *txt = st ? json_dumps(st, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
        json_decref(st);
        if (!txt) {
            lmx__index_close(ix);
            return fail("stats", &(lmx_error){LMX_ENOMEM, "out of memory"});
        }
        puts(txt);
        free(txt);
    } else {
        static const char *const names[] = LMX_BUCKET_NAMES;
        uint64_t total = lmx__index_n_tokens(ix);
        printf("%-24s %10s %14s %7s %7s", "domain", "docs", "tokens", "share", "long");
        for (int b = 0; b < LMX_N_BUCKETS; b++)
            printf(" %8s", names[b]);
        putchar('\n');
        for (uint32_t d = 0; d < lmx__index_n_domains(ix); d++) {
            const lmx_domain_stats *s = lmx__index_domain_stats(ix, d);
            printf("%-24s %10llu %14llu %6.1f%% %6.1f%%", lmx__index_domain_name(ix, d), (unsigned long long)s->docs,
                   (unsigned long long)s->tokens, total ? 100.0 * (double)s->tokens / (double)total : 0.0,
                   s->tokens ? 100.0 * (double)s->long_tokens / (double)s->tokens : 0.0);
            for (int b = 0; b < LMX_N_BUCKETS; b++)
                printf(" %7.1f%%", s->tokens ? 100.0 * (double)s->buckets[b] / (double)s->tokens : 0.0);
            putchar('\n');
        }
        printf("%-24s %10llu %14llu\n", "total", (unsigned long long)lmx__index_n_docs(ix), (unsigned long long)total);
        print_separators(ix);
    }
    lmx__index_close(ix);
    return 0;
}

static int cmd_doc(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        puts("usage: longmixd doc DIR ID... [--json] [--tokens]\n\nOne JSON object a line, in the order asked: id, domain, "
             "tokens, source, line\n(1-based; 0 for one-document files), row (= line, for Parquet and MDS: the row or sample\nnumber), doc_id (when indexed with --id-field). --tokens adds the token ids.");
        return 0;
    }
    const char *dir = NULL;
    int with_tokens = 0;
    int n_ids = 0;
    char **ids = calloc((size_t)argc, sizeof *ids);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            continue;
        if (strcmp(argv[i], "--tokens") == 0)
            with_tokens = 1;
        else if (!dir)
            dir = argv[i];
        else
            ids[n_ids++] = argv[i];
    }
    if (!dir || n_ids == 0) {
        free(ids);
        return usage_error("doc", "want DIR and at least one ID");
    }
    lmx_error e = {0};
    lmx_index *ix = NULL;
    if (lmx__index_open(dir, &ix, &e) != LMX_OK) {
        free(ids);
        return fail("doc", &e);
    }
    int rc = 0;
    for (int i = 0; i < n_ids && rc == 0; i++) {
        uint64_t id;
        lmx_doc d;
        if (lmx__parse_u64(ids[i], UINT64_MAX, &id) != 0) {
            fprintf(stderr, "longmixd doc: '%s' is not a document id\n", ids[i]);
            rc = 1;
            break;
        }
        if (lmx__index_doc(ix, id, &d, &e) != LMX_OK) {
            rc = fail("doc", &e);
            break;
        }
        json_t *o = json_object();
        json_object_set_new(o, "id", json_integer((json_int_t)id));
        json_object_set_new(o, "domain", json_string(lmx__index_domain_name(ix, d.domain)));
        json_object_set_new(o, "tokens", json_integer((json_int_t)d.n_tokens));
        json_object_set_new(o, "source", json_string(d.source));
        json_object_set_new(o, "line", json_integer((json_int_t)d.line));
        /* row-oriented inputs also name the row (1-based; "line" stays for every input) */
        if (strcmp(d.kind, "parquet") == 0 || strcmp(d.kind, "mds") == 0)
            json_object_set_new(o, "row", json_integer((json_int_t)d.line));
        if (d.doc_id)
            json_object_set_new(o, "doc_id", json_string(d.doc_id));
        if (with_tokens) {
            json_t *a = json_array();
            for (uint64_t t = 0; t < d.n_tokens; t++)
                json_array_append_new(a, json_integer(lmx__doc_token(&d, t)));
            json_object_set_new(o, "ids", a);
        }
        char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        puts(txt);
        free(txt);
        json_decref(o);
    }
    lmx__index_close(ix);
    free(ids);
    return rc;
}

static int cmd_keygen(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        puts("usage: longmixd keygen [--json]\n\nPrints a new random access token and the hash to put in the config's\n"
             "\"auth\" lists. Only the hash is stored server side; give the token to clients.");
        return 0;
    }
    int json = argc > 1 && strcmp(argv[1], "--json") == 0;
    if (argc > 2 || (argc == 2 && !json))
        return usage_error("keygen", "unknown argument");
    if (sodium_init() < 0) {
        fputs("longmixd keygen: libsodium failed to initialize\n", stderr);
        return 1;
    }
    uint8_t raw[32], h[32];
    char token[4 + 65], hex[65];
    randombytes_buf(raw, sizeof raw);
    memcpy(token, "lmx_", 4);
    lmx__hex(raw, sizeof raw, token + 4);
    lmxd_token_hash(token, h);
    lmx__hex(h, sizeof h, hex);
    sodium_memzero(raw, sizeof raw);
    if (json)
        printf("{\"token\": \"%s\", \"hash\": \"blake2b-256:%s\"}\n", token, hex);
    else
        printf("token: %s\nhash:  blake2b-256:%s\n", token, hex);
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    static const char usage[] =
        "usage: longmixd serve --config FILE [--listen HOST:PORT] [--index DIR] [--insecure] [--skip-verify]\n"
        "                      [--port-file FILE]\n"
        "\n"
        "Serves the config's plans over HTTP (proto/HTTP.md). SIGHUP reloads the plans and the token\n"
        "lists; SIGTERM drains in-flight requests and exits 0. Without \"auth\" in the config only a\n"
        "loopback address is allowed unless --insecure is given. Shard checksums are verified at start\n"
        "unless --skip-verify. Plans added with POST /v1/plans (admin token) are kept in the config's\n"
        "\"state_dir\" and restored at start; config plans win over runtime plans of the same name.\n"
        "--port-file FILE receives the bound port once serving (use port 0 for an ephemeral one).\n";
    lmxd_serve_options o = {0};
    static const struct option lo[] = {{"config", 1, 0, 'c'},   {"listen", 1, 0, 'l'},      {"index", 1, 0, 'i'},
                                       {"insecure", 0, 0, 'k'}, {"skip-verify", 0, 0, 's'}, {"help", 0, 0, 'h'},
                                       {"port-file", 1, 0, 'p'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'c': o.config_path = optarg; break;
        case 'l': o.listen = optarg; break;
        case 'i': o.index_dir = optarg; break;
        case 'k': o.insecure = 1; break;
        case 's': o.skip_verify = 1; break;
        case 'p': o.port_file = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return usage_error("serve", "unknown option");
        }
    }
    if (!o.config_path)
        return usage_error("serve", "--config is required");
    if (optind < argc)
        return usage_error("serve", "unexpected argument");
    return lmxd_serve(&o);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        puts("longmixd " LMX_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"index", cmd_index}, {"verify", cmd_verify},     {"stats", cmd_stats}, {"doc", cmd_doc},
                {"serve", cmd_serve}, {"tokenize", lmxd_cmd_tokenize}, {"keygen", cmd_keygen},
                {"export", lmxd_cmd_export}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "longmixd: unknown command '%s' (see longmixd --help)\n", argv[1]);
    return 2;
}
