#define _POSIX_C_SOURCE 200809L
/* longmix: the trainer/admin command line. Uses only the public API (longmix.h) and jansson. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "longmix.h"

/* The process umask (umask() can only be read by setting it). */
static mode_t current_umask(void)
{
    mode_t m = umask(022);
    umask(m);
    return m;
}

static const char usage_main[] =
    "usage: longmix COMMAND [OPTIONS]\n"
    "\n"
    "  fetch   one batch           longmix fetch --url URL --plan NAME --step S [--rank R --world W] [--cp-rank C --cp-size K] [--token T] (--out FILE | --json)\n"
    "  stats   mixture statistics  longmix stats --url URL [--plan NAME] [--json]\n"
    "  show    a sequence as text  longmix show --url URL --plan NAME --step S --seq K\n"
    "  bench   load test           longmix bench --url URL --plan NAME --clients N --seconds T [--world W]\n"
    "\n"
    "--url takes a comma separated list of replicas. The token may also come from $LONGMIX_TOKEN.\n"
    "--timeout SECONDS bounds each HTTP request (default 60), --deadline SECONDS all attempts for one\n"
    "batch together (default: none; fetch and show).\n";

typedef struct args {
    const char *url, *plan, *token, *out;
    uint64_t step, seq;
    uint32_t rank, world, clients, cp_rank, cp_size; /* cp_size 0: no --cp-* given */
    uint32_t cp_layout; /* LMX_CP_LAYOUT_* (--cp-layout) */
    double seconds;
    int json, have_step, no_zstd;
    uint32_t timeout_ms, deadline_ms; /* 0 = the library's default / none */
    uint64_t max_batch_bytes;         /* 0 = derived from the plan */
} args;

/* A duration in seconds (decimals allowed) as milliseconds in [1, 2^31). */
static int parse_seconds(const char *cmd, const char *name, const char *v, uint32_t *ms)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= 0.001) || x > 2e6) {
        fprintf(stderr, "longmix %s: --%s must be a number of seconds in [0.001, 2000000], got '%s'\n", cmd, name, v);
        return -1;
    }
    *ms = (uint32_t)(x * 1000 + 0.5);
    return 0;
}

static int die(const char *cmd, const char *msg)
{
    fprintf(stderr, "longmix %s: %s\n", cmd, msg);
    return 1;
}

static int parse_uint(const char *cmd, const char *name, const char *v, uint64_t max, uint64_t *out)
{
    char *end;
    if (!v || !*v || *v == '-' || *v == '+')
        goto bad;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || x > max)
        goto bad;
    *out = x;
    return 0;
bad:
    fprintf(stderr, "longmix %s: --%s must be an integer in [0, %llu], got '%s'\n", cmd, name, (unsigned long long)max,
            v ? v : "");
    return -1;
}

/* Common options; returns 0, or the exit code to return (after printing help or an error). */
static int parse_args(const char *cmd, const char *usage, int argc, char **argv, args *a)
{
    static const struct option lo[] = {
        {"url", 1, 0, 'u'},   {"plan", 1, 0, 'p'},    {"step", 1, 0, 's'},    {"rank", 1, 0, 'r'},
        {"world", 1, 0, 'w'}, {"token", 1, 0, 't'},   {"out", 1, 0, 'o'},     {"json", 0, 0, 'j'},
        {"seq", 1, 0, 'k'},   {"clients", 1, 0, 'c'}, {"seconds", 1, 0, 'S'}, {"no-zstd", 0, 0, 'Z'},
        {"timeout", 1, 0, 'T'}, {"deadline", 1, 0, 'D'}, {"max-batch-bytes", 1, 0, 'M'},
        {"cp-rank", 1, 0, 'C'}, {"cp-size", 1, 0, 'K'}, {"cp-layout", 1, 0, 'L'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->world = 1;
    a->clients = 4;
    a->seconds = 10;
    a->token = getenv("LONGMIX_TOKEN");
    int c;
    uint64_t u = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'u': a->url = optarg; break;
        case 'p': a->plan = optarg; break;
        case 't': a->token = optarg; break;
        case 'o': a->out = optarg; break;
        case 'j': a->json = 1; break;
        case 'Z': a->no_zstd = 1; break;
        case 'T':
            if (parse_seconds(cmd, "timeout", optarg, &a->timeout_ms))
                return 2;
            break;
        case 'D':
            if (parse_seconds(cmd, "deadline", optarg, &a->deadline_ms))
                return 2;
            break;
        case 'M':
            if (parse_uint(cmd, "max-batch-bytes", optarg, UINT64_MAX >> 1, &a->max_batch_bytes) || !a->max_batch_bytes) {
                if (!a->max_batch_bytes && optarg[0] == '0')
                    fprintf(stderr, "longmix %s: --max-batch-bytes must be at least 1\n", cmd);
                return 2;
            }
            break;
        case 's':
            if (parse_uint(cmd, "step", optarg, UINT64_MAX >> 2, &a->step))
                return 2;
            a->have_step = 1;
            break;
        case 'k':
            if (parse_uint(cmd, "seq", optarg, 1u << 20, &a->seq))
                return 2;
            break;
        case 'r':
            if (parse_uint(cmd, "rank", optarg, 1u << 30, &u))
                return 2;
            a->rank = (uint32_t)u;
            break;
        case 'w':
            if (parse_uint(cmd, "world", optarg, 1u << 30, &u))
                return 2;
            if (u == 0) {
                fprintf(stderr, "longmix %s: --world must be at least 1\n", cmd);
                return 2;
            }
            a->world = (uint32_t)u;
            break;
        case 'C':
            if (parse_uint(cmd, "cp-rank", optarg, 65535, &u))
                return 2;
            a->cp_rank = (uint32_t)u;
            a->cp_size = a->cp_size ? a->cp_size : 1;
            break;
        case 'K':
            if (parse_uint(cmd, "cp-size", optarg, 65536, &u) || u == 0) {
                if (u == 0)
                    fprintf(stderr, "longmix %s: --cp-size must be at least 1\n", cmd);
                return 2;
            }
            a->cp_size = (uint32_t)u;
            break;
        case 'L':
            if (strcmp(optarg, "thd") != 0 && strcmp(optarg, "zigzag") != 0) {
                fprintf(stderr, "longmix %s: --cp-layout must be zigzag or thd\n", cmd);
                return 2;
            }
            a->cp_layout = strcmp(optarg, "thd") == 0 ? LMX_CP_LAYOUT_THD : LMX_CP_LAYOUT_ZIGZAG;
            a->cp_size = a->cp_size ? a->cp_size : 1;
            break;
        case 'c':
            if (parse_uint(cmd, "clients", optarg, 4096, &u) || u == 0)
                return 2;
            a->clients = (uint32_t)u;
            break;
        case 'S': {
            char *end;
            a->seconds = strtod(optarg, &end);
            if (*end || !(a->seconds > 0) || a->seconds > 86400) {
                fprintf(stderr, "longmix %s: --seconds must be a number in (0, 86400]\n", cmd);
                return 2;
            }
            break;
        }
        case 'h': fputs(usage, stdout); return -1;
        default: fprintf(stderr, "longmix %s: unknown option (see longmix %s --help)\n", cmd, cmd); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "longmix %s: unexpected argument '%s'\n", cmd, argv[optind]);
        return 2;
    }
    if (!a->url) {
        fprintf(stderr, "longmix %s: --url is required\n", cmd);
        return 2;
    }
    return 0;
}

static json_t *batch_json(const lmx_batch *b, const char *plan)
{
    json_t *o = json_object(), *seqs = json_array();
    uint32_t n = lmx_batch_n_seqs(b), W = lmx_batch_seq_len(b), tb = lmx_batch_token_bytes(b);
    uint32_t L = lmx_batch_slice_len(b); /* positions sent per sequence */
    const int32_t *labels = lmx_batch_labels(b);
    const uint32_t *pos = lmx_batch_position_ids(b);
    json_object_set_new(o, "plan", json_string(plan));
    json_object_set_new(o, "plan_id", json_string(lmx_batch_plan_id(b)));
    json_object_set_new(o, "step", json_integer((json_int_t)lmx_batch_step(b)));
    json_object_set_new(o, "rank", json_integer(lmx_batch_rank(b)));
    json_object_set_new(o, "world", json_integer(lmx_batch_world(b)));
    json_object_set_new(o, "seq_len", json_integer(W));
    json_object_set_new(o, "token_bytes", json_integer(tb));
    if (labels) {
        json_object_set_new(o, "cp_rank", json_integer(lmx_batch_cp_rank(b)));
        json_object_set_new(o, "cp_size", json_integer(lmx_batch_cp_size(b)));
        json_object_set_new(o, "ignore_index", json_integer(lmx_batch_ignore_index(b)));
        json_object_set_new(o, "cp_layout", json_string(lmx_batch_cp_layout(b) == LMX_CP_LAYOUT_THD ? "thd" : "zigzag"));
    }
    if (lmx_batch_padded(b))
        json_object_set_new(o, "padded", json_true());
    const uint8_t *t = lmx_batch_tokens(b);
    int32_t *cu = malloc(sizeof *cu * ((size_t)W + 2));
    for (uint32_t s = 0; s < n; s++) {
        json_t *so = json_object(), *toks = json_array(), *spans = json_array();
        for (uint32_t i = 0; i < L; i++) {
            size_t k = (size_t)s * L + i;
            uint32_t v = tb == 2 ? (uint32_t)(t[2 * k] | t[2 * k + 1] << 8)
                                 : (uint32_t)t[4 * k] | (uint32_t)t[4 * k + 1] << 8 | (uint32_t)t[4 * k + 2] << 16 |
                                       (uint32_t)t[4 * k + 3] << 24;
            json_array_append_new(toks, json_integer(v));
        }
        json_object_set_new(so, "tokens", toks);
        if (labels) {
            json_t *la = json_array(), *pa = json_array();
            for (uint32_t i = 0; i < L; i++) {
                json_array_append_new(la, json_integer(labels[(size_t)s * L + i]));
                json_array_append_new(pa, json_integer(pos[(size_t)s * L + i]));
            }
            json_object_set_new(so, "labels", la);
            json_object_set_new(so, "position_ids", pa);
        }
        json_object_set_new(so, "next_token", json_integer(lmx_batch_next_token(b, s)));
        for (uint32_t i = 0; i < lmx_batch_n_spans(b, s); i++) {
            lmx_span_info sp;
            lmx_batch_span(b, s, i, &sp);
            json_t *x = json_object();
            json_object_set_new(x, "domain", json_string(sp.domain));
            json_object_set_new(x, "doc", json_integer((json_int_t)sp.doc));
            json_object_set_new(x, "offset", json_integer((json_int_t)sp.offset));
            json_object_set_new(x, "start", json_integer(sp.start));
            json_object_set_new(x, "length", json_integer(sp.length));
            json_array_append_new(spans, x);
        }
        json_object_set_new(so, "spans", spans);
        uint32_t ncu = lmx_batch_cu_seqlens(b, s, cu, W + 2);
        if (ncu) {
            json_t *ca = json_array();
            for (uint32_t i = 0; i < ncu && i < W + 2; i++)
                json_array_append_new(ca, json_integer(cu[i]));
            json_object_set_new(so, "cu_seqlens", ca);
        }
        /* padded plans: the real boundaries too (cu_seqlens above are TE's cu_seqlens_padded) */
        if (ncu && lmx_batch_padded(b)) {
            json_t *ca = json_array();
            ncu = lmx_batch_cu_seqlens_real(b, s, cu, W + 2);
            for (uint32_t i = 0; i < ncu && i < W + 2; i++)
                json_array_append_new(ca, json_integer(cu[i]));
            json_object_set_new(so, "cu_seqlens_real", ca);
        }
        json_array_append_new(seqs, so);
    }
    free(cu);
    json_object_set_new(o, "sequences", seqs);
    return o;
}

static int open_client(const char *cmd, const args *a, uint64_t start, lmx_client **c)
{
    lmx_client_options o;
    lmx_client_options_init(&o);
    o.urls = a->url;
    o.plan = a->plan;
    o.rank = a->rank;
    o.world = a->world;
    o.token = a->token;
    o.start_step = start;
    o.no_zstd = a->no_zstd;
    o.timeout_ms = a->timeout_ms;
    o.deadline_ms = a->deadline_ms;
    o.max_batch_bytes = a->max_batch_bytes;
    o.cp_rank = a->cp_rank;
    o.cp_size = a->cp_size;
    o.cp_layout = a->cp_layout;
    lmx_error e = {0};
    if (lmx_client_open(&o, c, &e) != LMX_OK)
        return die(cmd, e.message);
    return 0;
}

static int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* --out: "-" is standard output; a path that exists and is not a regular file (a FIFO, a device,
 * a symbolic link such as /proc/self/fd/1) is opened and written in place; a regular file or a
 * new name is written to a temporary file in the same folder, fsync'ed and renamed over it. */
static int write_out(const char *path, const void *body, size_t n)
{
    if (strcmp(path, "-") == 0) {
        if (write_all(STDOUT_FILENO, body, n) != 0) {
            fprintf(stderr, "longmix fetch: writing the batch to standard output: %s\n", strerror(errno));
            return -1;
        }
        return 0;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) {
            fprintf(stderr, "longmix fetch: --out %s is a directory\n", path);
            return -1;
        }
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0 || write_all(fd, body, n) != 0) {
            fprintf(stderr, "longmix fetch: writing the batch to %s: %s\n", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        if (close(fd) != 0) {
            fprintf(stderr, "longmix fetch: writing the batch to %s: %s\n", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    size_t pl = strlen(path) + 16;
    char *tmp = malloc(pl);
    if (!tmp) {
        fputs("longmix fetch: out of memory\n", stderr);
        return -1;
    }
    snprintf(tmp, pl, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    int ok = fd >= 0 && fchmod(fd, 0644 & ~current_umask()) == 0 && write_all(fd, body, n) == 0 && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "longmix fetch: writing the batch to %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : -1;
}

static int cmd_fetch(int argc, char **argv)
{
    static const char usage[] =
        "usage: longmix fetch --url URL --plan NAME --step S [--rank R --world W] [--cp-rank C --cp-size K]\n"
        "                     [--cp-layout zigzag|thd] [--token T] (--out FILE | --json)\n"
        "                     [--timeout SECONDS] [--deadline SECONDS] [--max-batch-bytes N] [--no-zstd]\n"
        "\n"
        "Fetches batch S for rank R of W, verifies it (digest, format, identity) and either writes the\n"
        "uncompressed wire body (proto/WIRE.md) to FILE or prints it as JSON: plan, plan_id, step, rank,\n"
        "world, seq_len and per sequence its tokens, next_token, spans and cu_seqlens.\n"
        "--out - writes to standard output. A regular FILE (or a new one) is replaced atomically; a FIFO,\n"
        "device or symbolic link is written in place (the link is followed, not replaced).\n"
        "--timeout bounds each HTTP request (default 60 s), --deadline all attempts together (default:\n"
        "retries x timeout). --max-batch-bytes refuses larger batches (default: derived from the plan).\n"
        "\n"
        "With --cp-rank C --cp-size K (either one; defaults 0 and 1) every sequence is context-parallel\n"
        "rank C's zigzag slice (chunks C and 2K-1-C of 2K; wire v2) and the JSON also has, per sequence,\n"
        "labels and position_ids of the slice (cu_seqlens stay the whole sequence's). --json alone asks\n"
        "for K = 1 (the whole sequence with labels and position_ids); --out alone writes wire v1.\n"
        "--cp-layout thd (a plan with pad_multiple, a multiple of 2K) splits every padded document\n"
        "instead (Transformer Engine's THD layout). A padded plan answers wire v3 and the JSON adds\n"
        "\"padded\": true and per sequence cu_seqlens_real (its cu_seqlens are TE's cu_seqlens_padded).\n";
    args a;
    int rc = parse_args("fetch", usage, argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.plan || !a.have_step)
        return die("fetch", "--plan and --step are required");
    if (!a.out && !a.json)
        return die("fetch", "say where the batch goes: --out FILE or --json");
    if (a.cp_size && a.cp_rank >= a.cp_size)
        return die("fetch", "--cp-rank must be below --cp-size");
    if (a.json && !a.out && !a.cp_size)
        a.cp_size = 1; /* labels and position ids with the JSON */
    lmx_client *c;
    if ((rc = open_client("fetch", &a, a.step, &c)))
        return rc;
    lmx_batch *b = NULL;
    lmx_error e = {0};
    if (lmx_client_fetch(c, a.step, &b, &e) != LMX_OK) {
        lmx_client_close(c);
        return die("fetch", e.message);
    }
    if (a.out) {
        size_t n;
        const void *body = lmx_batch_body(b, &n);
        if (write_out(a.out, body, n) != 0)
            rc = 1;
    }
    if (a.json) {
        json_t *j = batch_json(b, a.plan);
        json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(j);
    }
    lmx_batch_free(b);
    lmx_client_close(c);
    return rc;
}

static void bar(double frac, int width)
{
    int n = (int)lround(frac * width);
    for (int i = 0; i < width; i++)
        fputs(i < n ? "#" : ".", stdout);
}

static int cmd_stats(int argc, char **argv)
{
    static const char usage[] =
        "usage: longmix stats --url URL [--plan NAME] [--json]\n"
        "\n"
        "Per plan: each domain's target and realized token share, long-document share (target vs\n"
        "realized), epochs used, and the token-weighted length buckets of Fu et al. 2024, Figure 2.\n";
    args a;
    int rc = parse_args("stats", usage, argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    char path[256], *body = NULL;
    snprintf(path, sizeof path, "/v1/stats%s%s", a.plan ? "?plan=" : "", a.plan ? a.plan : "");
    lmx_error e = {0};
    if (lmx_get(a.url, a.token, path, a.timeout_ms, &body, NULL, &e) != LMX_OK)
        return die("stats", e.message);
    if (a.json) {
        fputs(body, stdout);
        lmx_free(body);
        return 0;
    }
    json_t *root = json_loads(body, 0, NULL);
    lmx_free(body);
    if (!root)
        return die("stats", "the server's /v1/stats is not JSON");
    static const char *const buckets[] = {"0-1K", "1K-2K", "2K-4K", "4K-8K", "8K-16K", "16K-32K", "32K-64K", "64K-128K", "128K+"};
    const char *pname;
    json_t *p;
    json_object_foreach(json_object_get(root, "plans"), pname, p)
    {
        printf("plan %s (%s, id %s) over the first %lld tokens\n", pname,
               json_string_value(json_object_get(p, "strategy")), json_string_value(json_object_get(p, "plan_id")),
               (long long)json_integer_value(json_object_get(p, "window_tokens")));
        printf("  %-24s %8s %8s %-22s %8s %8s %7s\n", "domain", "target", "realized", "", "long exp", "long", "epochs");
        const char *dn;
        json_t *d;
        json_object_foreach(json_object_get(p, "domains"), dn, d)
        {
            double tgt = json_number_value(json_object_get(d, "target_share"));
            double got = json_number_value(json_object_get(d, "realized_share"));
            printf("  %-24s %7.2f%% %7.2f%% ", dn, 100 * tgt, 100 * got);
            bar(got, 20);
            printf("   %7.1f%% %7.1f%% %7.2f\n", 100 * json_number_value(json_object_get(d, "expected_long_share")),
                   100 * json_number_value(json_object_get(d, "realized_long_share")),
                   json_number_value(json_object_get(d, "epochs")));
        }
        printf("  length buckets (share of tokens):\n");
        json_object_foreach(json_object_get(p, "domains"), dn, d)
        {
            json_t *bk = json_object_get(d, "buckets");
            double tot = 0;
            for (int i = 0; i < 9; i++)
                tot += (double)json_integer_value(json_object_get(bk, buckets[i]));
            printf("  %-24s", dn);
            for (int i = 0; i < 9; i++)
                printf(" %s:%4.1f%%", buckets[i], tot > 0 ? 100 * (double)json_integer_value(json_object_get(bk, buckets[i])) / tot : 0.0);
            putchar('\n');
        }
        putchar('\n');
    }
    json_decref(root);
    return 0;
}

static int cmd_show(int argc, char **argv)
{
    static const char usage[] =
        "usage: longmix show --url URL --plan NAME --step S --seq K [--rank R --world W]\n"
        "\n"
        "Prints sequence K of batch S: one block per document piece with its domain, document id and\n"
        "offset, then the text the server decodes for it (token ids when the server cannot decode).\n";
    args a;
    int rc = parse_args("show", usage, argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.plan || !a.have_step)
        return die("show", "--plan and --step are required");
    lmx_client *c;
    if ((rc = open_client("show", &a, a.step, &c)))
        return rc;
    lmx_batch *b = NULL;
    lmx_error e = {0};
    if (lmx_client_fetch(c, a.step, &b, &e) != LMX_OK) {
        lmx_client_close(c);
        return die("show", e.message);
    }
    if (a.seq >= lmx_batch_n_seqs(b)) {
        fprintf(stderr, "longmix show: --seq %llu but the batch has %u sequences\n", (unsigned long long)a.seq,
                lmx_batch_n_seqs(b));
        lmx_batch_free(b);
        lmx_client_close(c);
        return 1;
    }
    /* The server decodes with the index's own tokenizer; ids are the fallback when it cannot. */
    uint32_t s = (uint32_t)a.seq, n = lmx_batch_n_seqs(b);
    uint64_t g = a.step * (uint64_t)n * a.world + (uint64_t)a.rank * n + s;
    char path[1024], *body = NULL;
    snprintf(path, sizeof path, "/v1/plans/%s/sequences/%llu?format=text", a.plan, (unsigned long long)g);
    json_t *text = NULL;
    if (lmx_get(a.url, a.token, path, a.timeout_ms, &body, NULL, &e) == LMX_OK)
        text = json_loads(body, 0, NULL);
    lmx_free(body);
    json_t *tspans = json_object_get(text, "spans");
    if (!tspans)
        fprintf(stderr, "longmix show: no text from the server (%s); printing token ids\n",
                e.message[0] ? e.message : "unexpected answer");
    uint32_t *ids = NULL;
    size_t L = lmx_batch_seq_len(b);
    if (!tspans && (ids = malloc(sizeof *ids * (size_t)n * L)) != NULL)
        lmx_batch_tokens_u32(b, ids, (size_t)n * L);
    for (uint32_t i = 0; i < lmx_batch_n_spans(b, s); i++) {
        lmx_span_info sp;
        lmx_batch_span(b, s, i, &sp);
        json_t *ts = json_array_get(tspans, i), *src = json_object_get(ts, "source");
        const char *where = json_object_get(ts, "row") ? "row" : "line";
        printf("=== [%s] doc %llu tokens %llu..%llu at %u", sp.domain, (unsigned long long)sp.doc,
               (unsigned long long)sp.offset, (unsigned long long)(sp.offset + sp.length), sp.start);
        if (json_is_string(src)) /* the source file and line (row for Parquet/MDS), as longmixd doc */
            printf(" from %s %s %lld", json_string_value(src), where,
                   (long long)json_integer_value(json_object_get(ts, where)));
        printf(" ===\n");
        json_t *t = json_object_get(ts, "text");
        if (t) {
            fwrite(json_string_value(t), 1, json_string_length(t), stdout);
        } else if (ids) {
            for (uint32_t k = 0; k < sp.length; k++)
                printf("%u ", ids[(size_t)s * L + sp.start + k]);
        }
        putchar('\n');
    }
    json_decref(text);
    free(ids);
    lmx_batch_free(b);
    lmx_client_close(c);
    return 0;
}

typedef struct bench_worker {
    const args *a;
    uint32_t id;
    double deadline;
    uint64_t batches, bytes, errors, seqs;
    double *lat;
    size_t n_lat, cap_lat;
    char last_error[LMX_ERROR_MESSAGE_MAX];
} bench_worker;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *bench_loop(void *arg)
{
    bench_worker *w = arg;
    lmx_client_options o;
    lmx_client_options_init(&o);
    o.urls = w->a->url;
    o.plan = w->a->plan;
    o.world = w->a->world;
    o.rank = w->id % w->a->world;
    o.token = w->a->token;
    o.no_zstd = w->a->no_zstd;
    o.retries = 1;
    lmx_client *c;
    lmx_error e = {0};
    if (lmx_client_open(&o, &c, &e) != LMX_OK) {
        w->errors++;
        snprintf(w->last_error, sizeof w->last_error, "%s", e.message);
        return NULL;
    }
    for (uint64_t step = w->id / w->a->world; now_s() < w->deadline; step += (w->a->clients + w->a->world - 1) / w->a->world) {
        double t0 = now_s();
        lmx_batch *b = NULL;
        if (lmx_client_fetch(c, step, &b, &e) != LMX_OK) {
            w->errors++;
            snprintf(w->last_error, sizeof w->last_error, "%s", e.message);
            if (e.code == LMX_ERANGE)
                step = 0;
            continue;
        }
        double dt = now_s() - t0;
        if (w->n_lat == w->cap_lat) {
            w->cap_lat = w->cap_lat ? w->cap_lat * 2 : 1024;
            w->lat = realloc(w->lat, w->cap_lat * sizeof *w->lat);
        }
        w->lat[w->n_lat++] = dt;
        w->batches++;
        w->seqs += lmx_batch_n_seqs(b);
        w->bytes += lmx_batch_body_size(b);
        lmx_batch_free(b);
    }
    lmx_client_close(c);
    return NULL;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static int cmd_bench(int argc, char **argv)
{
    static const char usage[] =
        "usage: longmix bench --url URL --plan NAME --clients N --seconds T [--world W] [--no-zstd]\n"
        "\n"
        "Runs N concurrent fetch loops (client i is rank i mod W) for T seconds, each on its own\n"
        "keep-alive connection, and prints batches/s, sequences/s, MB/s of uncompressed batch bodies,\n"
        "p50/p99 latency and errors.\n";
    args a;
    int rc = parse_args("bench", usage, argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.plan)
        return die("bench", "--plan is required");
    bench_worker *w = calloc(a.clients, sizeof *w);
    pthread_t *th = calloc(a.clients, sizeof *th);
    double t0 = now_s();
    for (uint32_t i = 0; i < a.clients; i++) {
        w[i].a = &a;
        w[i].id = i;
        w[i].deadline = t0 + a.seconds;
        pthread_create(&th[i], NULL, bench_loop, &w[i]);
    }
    uint64_t batches = 0, bytes = 0, errors = 0, seqs = 0;
    size_t n_lat = 0;
    for (uint32_t i = 0; i < a.clients; i++) {
        pthread_join(th[i], NULL);
        batches += w[i].batches;
        bytes += w[i].bytes;
        errors += w[i].errors;
        seqs += w[i].seqs;
        n_lat += w[i].n_lat;
    }
    double dt = now_s() - t0;
    double *lat = malloc((n_lat + 1) * sizeof *lat);
    size_t k = 0;
    for (uint32_t i = 0; i < a.clients; i++) {
        memcpy(lat + k, w[i].lat, w[i].n_lat * sizeof *lat);
        k += w[i].n_lat;
    }
    qsort(lat, n_lat, sizeof *lat, cmp_double);
    double p50 = n_lat ? lat[n_lat / 2] : 0, p99 = n_lat ? lat[(size_t)((double)n_lat * 0.99)] : 0;
    printf("{\"clients\": %u, \"seconds\": %.2f, \"batches\": %llu, \"batches_per_s\": %.1f, \"seq_per_s\": %.1f, "
           "\"MB_per_s\": %.1f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"errors\": %llu}\n",
           a.clients, dt, (unsigned long long)batches, (double)batches / dt, (double)seqs / dt, (double)bytes / dt / 1e6,
           p50 * 1e3, p99 * 1e3, (unsigned long long)errors);
    for (uint32_t i = 0; i < a.clients; i++)
        if (w[i].errors) {
            fprintf(stderr, "longmix bench: client %u: last error: %s\n", i, w[i].last_error);
            break;
        }
    for (uint32_t i = 0; i < a.clients; i++)
        free(w[i].lat);
    free(lat);
    free(w);
    free(th);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("longmix %s\n", lmx_version());
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"fetch", cmd_fetch}, {"stats", cmd_stats}, {"show", cmd_show}, {"bench", cmd_bench}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "longmix: unknown command '%s' (see longmix --help)\n", argv[1]);
    return 2;
}
