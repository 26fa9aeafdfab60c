#include "module.h"

#include "log.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

static module_t *loaded;
static char tmpdir[256];
static unsigned copy_seq;

static int ensure_tmpdir(void)
{
    if (tmpdir[0])
        return 0;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/sluice-modules.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        tmpdir[0] = '\0';
        return -1;
    }
    return 0;
}

void module_tmpdir_cleanup(void)
{
    if (tmpdir[0])
        rmdir(tmpdir);
}

static int copy_file(const char *src, const char *dst, off_t size)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) {
        close(in);
        return -1;
    }
    off_t off = 0;
    while (off < size) {
        ssize_t n = sendfile(out, in, &off, (size_t)(size - off));
        if (n <= 0)
            break;
    }
    close(in);
    close(out);
    return off == size ? 0 : -1;
}

/* Same major, and a minor no newer than ours (see version.h). */
static bool abi_compatible(uint32_t v)
{
    return SLC_ABI_MAJOR_OF(v) == SLC_ABI_MAJOR && SLC_ABI_MINOR_OF(v) <= SLC_ABI_MINOR;
}

/* abi_refusal names the file, the module (when its descriptor is known) and
 * both versions, so an operator can tell which side to upgrade. */
static void abi_refusal(char *err, size_t errlen, const char *path, const char *name, uint32_t v)
{
    char who[64] = "";
    if (name)
        snprintf(who, sizeof(who), " (%s)", name);
    if (SLC_ABI_MAJOR_OF(v) != SLC_ABI_MAJOR)
        snprintf(err, errlen,
                 "filter module '%s'%s was built for ABI %u.%u; this sluice provides %u.%u and "
                 "loads only modules of major %u",
                 path, who, SLC_ABI_MAJOR_OF(v), SLC_ABI_MINOR_OF(v), SLC_ABI_MAJOR, SLC_ABI_MINOR,
                 SLC_ABI_MAJOR);
    else
        snprintf(err, errlen,
                 "filter module '%s'%s needs SDK ABI %u.%u; this sluice provides %u.%u", path, who,
                 SLC_ABI_MAJOR_OF(v), SLC_ABI_MINOR_OF(v), SLC_ABI_MAJOR, SLC_ABI_MINOR);
}

module_t *module_load(const char *path, const slc_host_t *host, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot load filter module '%s': %s", path, strerror(errno));
        return NULL;
    }
    for (module_t *m = loaded; m; m = m->next) {
        if (m->dev == st.st_dev && m->ino == st.st_ino && m->size == st.st_size &&
            m->mtime.tv_sec == st.st_mtim.tv_sec && m->mtime.tv_nsec == st.st_mtim.tv_nsec &&
            strcmp(m->path, path) == 0) {
            m->refs++;
            return m;
        }
    }
    if (ensure_tmpdir() != 0) {
        snprintf(err, errlen, "cannot create a private module directory: %s", strerror(errno));
        return NULL;
    }
    char copy[512];
    const char *base = strrchr(path, '/');
    snprintf(copy, sizeof(copy), "%s/%u-%s", tmpdir, ++copy_seq, base ? base + 1 : path);
    if (copy_file(path, copy, st.st_size) != 0) {
        snprintf(err, errlen, "cannot load filter module '%s': copying it failed: %s", path,
                 strerror(errno));
        unlink(copy);
        return NULL;
    }
    void *h = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    /* A module that links a library with thread-local destructors or
     * atexit handlers (BoringSSL) asks never to be unmapped: promote the
     * mapping to RTLD_NODELETE before its name disappears, so the dlclose of
     * a reload that drops it leaves the code in place. */
    if (h && dlsym(h, SLC_FILTER_NODELETE_SYMBOL_NAME)) {
        void *pin = dlopen(copy, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD | RTLD_NODELETE);
        if (pin)
            dlclose(pin); /* the flag stays; only the extra reference goes */
    }
    unlink(copy);
    if (!h) {
        const char *e = dlerror();
        /* dlerror names the private copy; name the operator's file instead. */
        const char *colon = e ? strstr(e, ": ") : NULL;
        snprintf(err, errlen, "cannot load filter module '%s': %s", path,
                 colon ? colon + 2 : (e ? e : "unknown error"));
        return NULL;
    }
    /* From 1.3 on the module says which headers it was compiled with before
     * any of its code runs: refuse it here rather than hand the host table to
     * code built for a table we do not have. Older modules lack the symbol
     * and are judged by their descriptor below. */
    const uint32_t *abi_sym = dlsym(h, SLC_FILTER_ABI_SYMBOL_NAME);
    if (abi_sym && !abi_compatible(*abi_sym)) {
        abi_refusal(err, errlen, path, NULL, *abi_sym);
        dlclose(h);
        return NULL;
    }
    typedef const slc_filter_desc_t *(*entry_fn)(const slc_host_t *);
    entry_fn entry;
    *(void **)&entry = dlsym(h, SLC_FILTER_ENTRY_NAME);
    if (!entry) {
        snprintf(err, errlen,
                 "filter module '%s' has no entry point '%s' (build it with SLC_FILTER_DEFINE)",
                 path, SLC_FILTER_ENTRY_NAME);
        dlclose(h);
        return NULL;
    }
    const slc_filter_desc_t *d = entry(host);
    if (!d) {
        snprintf(err, errlen, "filter module '%s': entry point returned no descriptor", path);
        dlclose(h);
        return NULL;
    }
    if (!abi_compatible(d->abi_version)) {
        abi_refusal(err, errlen, path, d->name ? d->name : "?", d->abi_version);
        dlclose(h);
        return NULL;
    }
    if (d->struct_size < offsetof(slc_filter_desc_t, config_new) || !d->name) {
        snprintf(err, errlen, "filter module '%s': descriptor too small (%u bytes) or unnamed",
                 path, d->struct_size);
        dlclose(h);
        return NULL;
    }
    module_t *m = calloc(1, sizeof(*m));
    if (!m)
        abort();
    m->path = strdup(path);
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    m->size = st.st_size;
    m->mtime = st.st_mtim;
    m->handle = h;
    m->desc = d;
    /* The headers' version decides the module's struct layouts; a module
     * without the symbol (1.0-1.2) built its descriptor with its headers. */
    m->abi = abi_sym ? *abi_sym : d->abi_version;
    m->refs = 1;
    m->next = loaded;
    loaded = m;
    log_info("filter module loaded", "module=%s version=%s path=%s", d->name,
             d->version ? d->version : "?", path);
    return m;
}

void module_ref(module_t *m)
{
    m->refs++;
}

void module_unref(module_t *m)
{
    if (!m || --m->refs > 0)
        return;
    for (module_t **pp = &loaded; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    log_info("filter module unloaded", "module=%s path=%s", m->desc->name, m->path);
    dlclose(m->handle);
    free(m->path);
    free(m);
}
