// The RE2 shim behind slcu_regex_*: the only C++ in sluice. It keeps the
// C ABI (extern "C", no exception crosses it) so that the core and filters
// stay C and need only link libre2 and libstdc++.
//
// OWNERSHIP: slcu_regex_t wraps one heap RE2 object. The caller of
// slcu_regex_compile owns it (a filter: its config, which frees it in
// config_free); RE2 keeps its compiled programs and its DFA cache inside
// that object, within the max_mem budget set here.
#include <sluice/util.h>

#include <re2/re2.h>

#include <dlfcn.h>
#include <pthread.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

struct slcu_regex {
    re2::RE2 re;
    slcu_regex(re2::StringPiece p, const re2::RE2::Options &o) : re(p, o)
    {
    }
};

namespace
{

// Memory for one RE2 (both programs and their DFA caches). RE2's default
// (8 MiB) is meant for one process-wide pattern; a config may hold
// thousands of route regexes, and max_program_size already bounds them.
const int64_t kMaxMem = 1 << 20;

__attribute__((format(printf, 3, 4))) void set_error(slcu_regex_error_t *err, size_t pos,
                                                     const char *fmt, ...)
{
    if (err == nullptr) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    err->pos = pos;
}

// error_pos finds where RE2's offending fragment sits in the pattern: RE2
// reports the fragment's text, not its offset. The last occurrence is the
// likelier one (RE2 parses left to right and stops at the first error, so
// an earlier copy of the same text was accepted).
size_t error_pos(const char *pattern, size_t len, const std::string &arg)
{
    if (arg.empty() || arg.size() > len) {
        return 0;
    }
    for (size_t i = len - arg.size() + 1; i-- > 0;) {
        if (std::memcmp(pattern + i, arg.data(), arg.size()) == 0) {
            return i;
        }
    }
    return 0;
}

// pin_re2 keeps libre2 loaded for the rest of the process. RE2 allocates
// process-wide singletons once (its empty string and group maps) and keeps
// them in its own globals; when the last module linking libre2 is dlclose'd
// (a reload that drops the router), the library would be unmapped with
// those globals, orphaning the allocations (LeakSanitizer reports them),
// and the next load would allocate them again. RTLD_NODELETE on the
// already-loaded library (RTLD_NOLOAD: never a new load) prevents that.
// When libre2 is linked statically it lives in our own object, which we
// leave alone: pinning it would pin the filter module itself.
void pin_re2()
{
    Dl_info re2_info, self_info;
    void *re2_sym = reinterpret_cast<void *>(&re2::RE2::FullMatchN);
    void *self_sym = reinterpret_cast<void *>(&slcu_regex_compile);
    if (dladdr(re2_sym, &re2_info) == 0 || dladdr(self_sym, &self_info) == 0 ||
        re2_info.dli_fbase == self_info.dli_fbase || re2_info.dli_fname == nullptr) {
        return;
    }
    // The handle is deliberately never closed: that is the point.
    (void)dlopen(re2_info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
}

// pthread_once rather than std::call_once: the latter is a template whose
// instantiation has default visibility (namespace std), and would become an
// exported symbol of every filter module linking this archive.
pthread_once_t pin_once = PTHREAD_ONCE_INIT;

} // namespace

extern "C" slcu_regex_t *slcu_regex_compile(const char *pattern, size_t len,
                                            uint32_t max_program_size, slcu_regex_error_t *err)
{
    if (max_program_size == 0) {
        max_program_size = SLCU_REGEX_DEFAULT_MAX_PROGRAM_SIZE;
    }
    (void)pthread_once(&pin_once, pin_re2);
    re2::RE2::Options o;
    o.set_encoding(re2::RE2::Options::EncodingUTF8);
    o.set_log_errors(false); // errors go to the caller's diagnostics, not stderr
    o.set_max_mem(kMaxMem);
    o.set_never_capture(true); // full-match only: groups are never read
    slcu_regex_t *r = nullptr;
    try {
        r = new slcu_regex(re2::StringPiece(pattern != nullptr ? pattern : "", len), o);
    } catch (const std::bad_alloc &) {
        set_error(err, 0, "out of memory");
        return nullptr;
    }
    if (!r->re.ok()) {
        set_error(err, error_pos(pattern, len, r->re.error_arg()), "%s", r->re.error().c_str());
        delete r;
        return nullptr;
    }
    int size = r->re.ProgramSize();
    if (size < 0 || static_cast<uint32_t>(size) > max_program_size) {
        set_error(err, 0,
                  "program size %d is over max_program_size %u (simplify the regex "
                  "or raise max_program_size)",
                  size, max_program_size);
        delete r;
        return nullptr;
    }
    return r;
}

extern "C" void slcu_regex_free(slcu_regex_t *re)
{
    delete re;
}

extern "C" bool slcu_regex_match(const slcu_regex_t *re, const char *s, size_t len)
{
    // FullMatch anchors both ends (Envoy's safe_regex semantics). RE2's
    // matchers are const and thread-safe; a DFA cache miss may allocate
    // inside the RE2 object, bounded by kMaxMem, after which RE2 falls back
    // to its NFA rather than fail.
    try {
        return re2::RE2::FullMatch(re2::StringPiece(s != nullptr ? s : "", len), re->re);
    } catch (...) {
        return false;
    }
}

extern "C" int slcu_regex_program_size(const slcu_regex_t *re)
{
    return re->re.ProgramSize();
}
