/* Split virtqueues over guest memory (virtio 1.2 §2.7), every guest value checked. */
#ifndef BELLHOP_DEVICES_VIRTQUEUE_H
#define BELLHOP_DEVICES_VIRTQUEUE_H

#include "devices/virtio.h"

enum virtq_take_result { VIRTQ_EMPTY = 0, VIRTQ_TAKEN = 1, VIRTQ_BAD = -1 };

/* Ring sizes in bytes for a queue of num entries (with the EVENT_IDX word). */
uint64_t virtq_desc_bytes(uint16_t num);
uint64_t virtq_avail_bytes(uint16_t num);
uint64_t virtq_used_bytes(uint16_t num);

/* Takes the next available chain into r. On VIRTQ_BAD, *why says what was wrong. */
enum virtq_take_result virtq_take(struct virtq *q, const struct guest_mem *gm, bool indirect,
                                  bool event_idx, struct virtq_req *r, const char **why);
/* Puts a used element and publishes it; returns whether the driver wants an interrupt. */
bool virtq_put(struct virtq *q, const struct guest_mem *gm, bool event_idx, uint16_t head,
               uint32_t written);

#endif
