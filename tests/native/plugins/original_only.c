/* What a plugin built for flow-pipe's own runtime exports: flowpipe_create_stage and
 * flowpipe_destroy_stage, but no flowpipe_stage_entry (it does not link the SDK's
 * support code). The bodies do not matter: the loader refuses the library first. */
void* flowpipe_create_stage(void);
void flowpipe_destroy_stage(void* stage);
void* flowpipe_create_stage(void) { return 0; }
void flowpipe_destroy_stage(void* stage) { (void)stage; }
