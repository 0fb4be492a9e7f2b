/* `longmixd tokenize` (cmd_tokenize.c): JSON Lines text on stdin -> token ids on stdout. */
#ifndef LMXD_CMD_TOKENIZE_H
#define LMXD_CMD_TOKENIZE_H

/* argv[0] is "tokenize". Returns the process exit code. */
int lmxd_cmd_tokenize(int argc, char **argv);

#endif
