/* commands.h: every `mvl` subcommand, one function each, in the module it
 * belongs to.  pipeline/main.c holds the table that names them. */
#ifndef MVL_COMMANDS_H
#define MVL_COMMANDS_H

int cmd_cat(int argc, char **argv);    /* pipeline/cat.c */
int cmd_shard(int argc, char **argv);  /* pipeline/cat.c */
int cmd_ls(int argc, char **argv);     /* pipeline/ls.c */
int cmd_ingest(int argc, char **argv); /* pipeline/ingest.c */

#endif
