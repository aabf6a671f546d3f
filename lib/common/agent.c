/*
 * agent.c - run an agent's do_work() on its own thread.
 *
 * The duty cycle: call do_work(); if it did something, call it again at once;
 * if not, back off: a few spins, then sched_yield, then sleep on a condition
 * variable for a doubling time up to idle_max_us. firn_agent_runner_wake()
 * cuts a sleep short, so a producer that queues work for an idle agent does
 * not pay the whole sleep.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "firn_common.h"

struct firn_agent_runner {
	struct firn_agent agent;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int running; /* atomic */
	int wakeups; /* atomic: pending wake requests */
	int rc;
};

static void
idle_sleep(struct firn_agent_runner *r, uint32_t us)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)us * 1000;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_mutex_lock(&r->lock);
	/* Pairs with the release add in firn_agent_runner_wake(): a wake that
	 * raced with our decision to sleep is seen here and we do not sleep. */
	if (__atomic_load_n(&r->wakeups, __ATOMIC_ACQUIRE) == 0 &&
	    __atomic_load_n(&r->running, __ATOMIC_ACQUIRE))
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	__atomic_store_n(&r->wakeups, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&r->lock);
}

static void *
runner_main(void *arg)
{
	struct firn_agent_runner *r = arg;
	uint32_t idle = 0, sleep_us = 1;

	/* Pairs with the release store in firn_agent_runner_stop(). */
	while (__atomic_load_n(&r->running, __ATOMIC_ACQUIRE)) {
		int n = r->agent.do_work(r->agent.arg);

		if (n < 0) {
			r->rc = n;
			break;
		}
		if (n > 0) {
			idle = 0;
			sleep_us = 1;
			continue;
		}
		if (r->agent.idle_max_us == 0)
			continue;
		if (++idle < 16)
			continue;
		if (idle < 32) {
			sched_yield();
			continue;
		}
		idle_sleep(r, sleep_us);
		sleep_us = FIRN_MIN(sleep_us * 2, r->agent.idle_max_us);
	}
	if (r->agent.on_close)
		r->agent.on_close(r->agent.arg);
	return NULL;
}

struct firn_agent_runner *
firn_agent_runner_start(const struct firn_agent *agent)
{
	struct firn_agent_runner *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;
	int rc;

	if (r == NULL) {
		firn_err_set(-ENOMEM, "agent %s: out of memory", agent->name);
		return NULL;
	}
	r->agent = *agent;
	r->running = 1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&r->thread, NULL, runner_main, r);
	if (rc != 0) {
		firn_err_set(-rc, "agent %s: cannot start thread", agent->name);
		free(r);
		return NULL;
	}
	if (agent->name)
		pthread_setname_np(r->thread, agent->name);
	return r;
}

void
firn_agent_runner_wake(struct firn_agent_runner *r)
{
	/* Pairs with the acquire load in idle_sleep(). */
	if (__atomic_fetch_add(&r->wakeups, 1, __ATOMIC_RELEASE) == 0) {
		pthread_mutex_lock(&r->lock);
		pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->lock);
	}
}

int
firn_agent_runner_stop(struct firn_agent_runner *r)
{
	int rc;

	if (r == NULL)
		return 0;
	/* Pairs with the acquire load in runner_main(). */
	__atomic_store_n(&r->running, 0, __ATOMIC_RELEASE);
	firn_agent_runner_wake(r);
	pthread_join(r->thread, NULL);
	rc = r->rc;
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
	return rc;
}
