#ifndef LIB_ASYNC_PAGED_VMO_H_
#define LIB_ASYNC_PAGED_VMO_H_

#include <lib/async/dispatcher.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Pager-backed VMOs do not exist on Linux: the async-loop answers ZX_ERR_NOT_SUPPORTED. */
typedef void(async_paged_vmo_handler_t)(async_dispatcher_t *dispatcher, async_paged_vmo_t *paged_vmo,
                                        zx_status_t status, const zx_packet_page_request_t *request);

struct async_paged_vmo {
    async_state_t state;
    async_paged_vmo_handler_t *handler;
    zx_handle_t pager;
    zx_handle_t vmo;
};

zx_status_t async_create_paged_vmo(async_dispatcher_t *dispatcher, async_paged_vmo_t *paged_vmo,
                                   uint32_t options, zx_handle_t pager, uint64_t vmo_size,
                                   zx_handle_t *vmo_out);
zx_status_t async_detach_paged_vmo(async_dispatcher_t *dispatcher, async_paged_vmo_t *paged_vmo);

#ifdef __cplusplus
}
#endif

#endif
