/* no_entry: a test module that exports no slc_filter_entry, only a
 * harmless function, so that the host's "no entry symbol" error is tested
 * on a real shared object. */
#include <sluice/version.h>

__attribute__((visibility("default"))) int sluice_test_not_a_filter(void);

__attribute__((visibility("default"))) int sluice_test_not_a_filter(void)
{
    return SLC_ABI_MAJOR;
}
