/* A shared library that is not a stage: no flowpipe_stage_entry. */
int not_a_stage(void);
int not_a_stage(void) { return 42; }
