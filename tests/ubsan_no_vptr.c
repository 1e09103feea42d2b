// Preloaded (after libasan) into the daemon of reliability_test's EMFILE test under ASan, and only
// there: no-op handlers in place of libubsan's for a vptr-check cache miss, so that check is off for
// that one daemon. Out of fds, the check cannot test whether the object's memory is readable (it
// writes it to a pipe it cannot create) and reports a valid object as having an invalid vptr. A
// runtime suppression cannot help: to be matched, the suppression needs the same readability test.
// Built without sanitizers. Called by the daemon's instrumented code, on any thread.
void __ubsan_handle_dynamic_type_cache_miss(void* data, void* pointer, void* hash) {
  (void)data;
  (void)pointer;
  (void)hash;
}

void __ubsan_handle_dynamic_type_cache_miss_abort(void* data, void* pointer, void* hash) {
  (void)data;
  (void)pointer;
  (void)hash;
}
