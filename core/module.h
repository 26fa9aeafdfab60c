/* module: loading filter shared objects.
 *
 * dlopen caches by path, so a .so replaced on disk would not be loaded anew.
 * module_load therefore copies the file to a private path (one per distinct
 * file identity: device, inode, size, mtime) and dlopens the copy, then
 * unlinks it (the mapping stays). Modules are shared by every generation that
 * uses the same file identity and reference counted: the old code stays
 * mapped until the last generation using it is freed.
 *
 * Main thread only.
 */
#ifndef SLUICE_MODULE_H
#define SLUICE_MODULE_H

#define SLC_NO_WRAPPERS
#include <sluice/filter.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct module {
    struct module *next;
    char *path; /* resolved path as configured (malloc'd) */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    void *handle;
    const slc_filter_desc_t *desc;
    /* abi: the SLC_ABI_VERSION of the headers the module was compiled with
     * (its slc_filter_abi_version, else its descriptor's abi_version). It
     * fixes the layouts of what the module hands the core, e.g. the stride
     * of its slc_cfg_field_t tables. */
    uint32_t abi;
    int refs;
} module_t;

/* module_load loads (or reuses) the module at |path|. On failure it returns
 * NULL and writes a message naming the file and the reason into |err|. */
module_t *module_load(const char *path, const slc_host_t *host, char *err, size_t errlen);
void module_ref(module_t *m);
void module_unref(module_t *m);
/* module_tmpdir_cleanup removes the private directory at exit. */
void module_tmpdir_cleanup(void);

#endif
