/* longmixd export (proto/EXPORT.md): a plan's first N steps as Megatron .bin/.idx or NumPy files. */
#ifndef LMXD_EXPORT_H
#define LMXD_EXPORT_H

/* argv[0] is "export". Returns the process exit code (0, 1 on error, 2 on a usage error). */
int lmxd_cmd_export(int argc, char **argv);

#endif
