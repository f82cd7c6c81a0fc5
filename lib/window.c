/* SPDX-License-Identifier: MIT */
/*
 * window.c - slow start, congestion avoidance and halving on loss, counted
 * in requests. See window.h.
 */
#include "window.h"

static unsigned clip(unsigned v, unsigned lo, unsigned hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void udprr__window_init(struct udprr__window *w, unsigned initial,
                        unsigned max)
{
    w->max = clip(max, 1, UDPRR__WINDOW_MAX);
    w->size = clip(initial ? initial : UDPRR__WINDOW_INITIAL, 1, w->max);
    w->ssthresh = w->max;
    w->acked = 0;
    w->recover = 0;
    w->reductions = 0;
}

void udprr__window_reply(struct udprr__window *w, uint64_t in_flight)
{
    if (in_flight < w->size || w->size >= w->max)
        return;
    if (w->size < w->ssthresh) {
        w->size++;
        return;
    }
    if (++w->acked >= w->size) {
        w->acked = 0;
        w->size++;
    }
}

int udprr__window_loss(struct udprr__window *w, uint64_t seq,
                       uint64_t last_seq)
{
    if (w->reductions > 0 && seq <= w->recover)
        return 0;
    w->ssthresh = w->size / 2 > 1 ? w->size / 2 : 1;
    w->size = w->ssthresh;
    w->acked = 0;
    w->recover = last_seq;
    w->reductions++;
    return 1;
}
