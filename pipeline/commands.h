/* commands.h: every `mvl` subcommand, one function each, in the module it
 * belongs to.  pipeline/main.c holds the table that names them. */
#ifndef MVL_COMMANDS_H
#define MVL_COMMANDS_H

int cmd_cat(int argc, char **argv);    /* pipeline/cat.c */
int cmd_shard(int argc, char **argv);  /* pipeline/cat.c */
int cmd_ls(int argc, char **argv);     /* pipeline/ls.c */
int cmd_ingest(int argc, char **argv); /* pipeline/ingest.c */
int cmd_clean(int argc, char **argv);     /* filters/registry.c */
int cmd_capfilter(int argc, char **argv); /* filters/registry.c */
int cmd_imgfilter(int argc, char **argv); /* filters/registry.c */
int cmd_filter(int argc, char **argv);    /* filters/registry.c */
int cmd_dedup(int argc, char **argv);     /* filters/registry.c */
int cmd_tok(int argc, char **argv);       /* tokenizer/tok_cmd.c */
int cmd_recipe(int argc, char **argv);    /* mixers/mix_cmd.c */
int cmd_mix(int argc, char **argv);       /* mixers/mix_cmd.c */
int cmd_pack(int argc, char **argv);      /* mixers/pack_cmd.c */
int cmd_train(int argc, char **argv);     /* trainer/train_cmd.c */
int cmd_generate(int argc, char **argv);  /* trainer/generate_cmd.c */
int cmd_average(int argc, char **argv);   /* trainer/average_cmd.c */
int cmd_eval(int argc, char **argv);      /* trainer/eval_cmd.c */
int cmd_report(int argc, char **argv);    /* pipeline/report_cmd.c */
int cmd_run(int argc, char **argv);       /* pipeline/run_cmd.c */
int cmd_score(int argc, char **argv);     /* trainer/score_cmd.c */

#endif
