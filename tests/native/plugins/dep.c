/* The dependency that libstage_needs_dep.so cannot find at run time. */
int flowpipe_test_dep(void);
int flowpipe_test_dep(void) { return 7; }
