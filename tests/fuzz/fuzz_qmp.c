/* Fuzz target for the QMP reader: any bytes from a "QEMU" as the greeting and
 * the replies must give an error or a result, never a crash, leak or hang. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gitward/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	struct gw_qmp *q = NULL;
	struct gw_error err;

	if (size > 100000 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (write(sv[1], data, size) < 0) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	shutdown(sv[1], SHUT_WR);
	if (gw_qmp_open_fd(&q, sv[0], 50, &err) == 0) {
		json_t *ret = NULL;
		if (gw_qmp_execute(&ret, q, "query-status", NULL, 50, &err) == 0)
			json_decref(ret);
		gw_qmp_close(q);
	}
	close(sv[1]);
	return 0;
}
