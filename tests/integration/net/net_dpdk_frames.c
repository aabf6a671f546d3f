/*
 * net_dpdk_frames.c - the DPDK driver's frame logic without an EAL.
 *
 * Includes the driver's .c (SPDK style) to reach its statics: the EAL
 * argument splitter and af_packet ring sizing, the frame classifier on
 * hand-built good and bad frames (and on thousands of mutated ones, where
 * the property is that a frame accepted as UDP always has its payload
 * inside the frame and a valid IPv4 header checksum), the in-place ARP and
 * ICMP replies, and the neighbour table. The veth test covers the same
 * code against a real kernel on the other end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../../drivers/net/dpdk/net_dpdk.c"

static const uint8_t our_mac[6] = {0x02, 0, 0, 0, 0, 0x02};
static const uint8_t peer_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
#define OUR_IP "198.18.0.2"
#define PEER_IP "198.18.0.1"

static uint32_t
ip4(const char *s)
{
	struct in_addr a;

	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return a.s_addr;
}

static struct firn_net_port *
test_port(void)
{
	struct firn_net_port *p = NULL;

	assert_int_equal(posix_memalign((void **)&p, 64, sizeof(*p)), 0);
	memset(p, 0, sizeof(*p));
	p->ip = ip4(OUR_IP);
	p->netmask = htonl(0xffffff00u);
	p->udp_port = htons(7400);
	memcpy(p->mac.addr_bytes, our_mac, 6);
	p->tsc_hz = 1000000000ull;
	rte_spinlock_init(&p->neigh_lock);
	return p;
}

/* Ethernet + IPv4 + UDP with valid checksums; returns the frame length. */
static uint32_t
make_udp(uint8_t *f, const char *dst_ip, uint16_t dport, uint32_t plen)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
	uint32_t i;

	memcpy(eth->dst_addr.addr_bytes, our_mac, 6);
	memcpy(eth->src_addr.addr_bytes, peer_mac, 6);
	eth->ether_type = htons(RTE_ETHER_TYPE_IPV4);
	memset(ip, 0, sizeof(*ip));
	ip->version_ihl = 0x45;
	ip->total_length = htons((uint16_t)(28 + plen));
	ip->fragment_offset = htons(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = ip4(PEER_IP);
	ip->dst_addr = ip4(dst_ip);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp->src_port = htons(40000);
	udp->dst_port = htons(dport);
	udp->dgram_len = htons((uint16_t)(8 + plen));
	udp->dgram_cksum = 0;
	for (i = 0; i < plen; i++)
		((uint8_t *)(udp + 1))[i] = (uint8_t)i;
	return DPDK_HDRS + plen;
}

static void
refresh_ip_cksum(uint8_t *f)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(f + RTE_ETHER_HDR_LEN);

	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
}

static uint32_t
make_arp(uint8_t *f, uint16_t op, const char *tip)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f;
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(eth + 1);

	memset(eth->dst_addr.addr_bytes, 0xff, 6);
	memcpy(eth->src_addr.addr_bytes, peer_mac, 6);
	eth->ether_type = htons(RTE_ETHER_TYPE_ARP);
	arp->arp_hardware = htons(RTE_ARP_HRD_ETHER);
	arp->arp_protocol = htons(RTE_ETHER_TYPE_IPV4);
	arp->arp_hlen = 6;
	arp->arp_plen = 4;
	arp->arp_opcode = htons(op);
	memcpy(arp->arp_data.arp_sha.addr_bytes, peer_mac, 6);
	arp->arp_data.arp_sip = ip4(PEER_IP);
	memset(arp->arp_data.arp_tha.addr_bytes, 0, 6);
	arp->arp_data.arp_tip = ip4(tip);
	return RTE_ETHER_HDR_LEN + sizeof(*arp);
}

static uint32_t
make_ping(uint8_t *f, uint32_t plen)
{
	struct rte_ipv4_hdr *ip;
	struct rte_icmp_hdr *icmp;
	uint32_t len = make_udp(f, OUR_IP, 0, plen);

	ip = (struct rte_ipv4_hdr *)(f + RTE_ETHER_HDR_LEN);
	icmp = (struct rte_icmp_hdr *)(ip + 1);
	ip->next_proto_id = IPPROTO_ICMP;
	refresh_ip_cksum(f);
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REQUEST;
	icmp->icmp_code = 0;
	icmp->icmp_ident = htons(77);
	icmp->icmp_seq_nb = htons(1);
	icmp->icmp_cksum = 0;
	icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, 8 + plen);
	return len;
}

static enum dpdk_verdict
classify(struct firn_net_port *p, const uint8_t *f, uint32_t len, struct dpdk_parsed *pp)
{
	struct dpdk_parsed tmp;

	return dpdk_classify(p, f, len, 0, pp ? pp : &tmp);
}

static void
test_split_args(void **state)
{
	char s[] = "  -l 0  --no-huge\t-m 1024 \n";
	char many[200];
	char *argv[8];
	int argc, i;

	(void)state;
	argv[0] = (char *)"firn";
	argc = dpdk_split_args(s, argv, 1, 8);
	assert_int_equal(argc, 6);
	assert_string_equal(argv[1], "-l");
	assert_string_equal(argv[2], "0");
	assert_string_equal(argv[3], "--no-huge");
	assert_string_equal(argv[5], "1024");
	for (i = 0; i < 20; i++)
		memcpy(many + 2 * i, "a ", 2);
	many[40] = '\0';
	assert_int_equal(dpdk_split_args(many, argv, 1, 8), -E2BIG);
}

static void
test_af_packet_fixup(void **state)
{
	char v[32];
	uint32_t fs;
	char *out;

	(void)state;
	assert_true(dpdk_devarg("net_af_packet0,iface=eth1,qpairs=2", "iface", v, sizeof(v)));
	assert_string_equal(v, "eth1");
	assert_true(dpdk_devarg("net_af_packet0,iface=eth1,qpairs=2", "qpairs", v, sizeof(v)));
	assert_string_equal(v, "2");
	assert_false(dpdk_devarg("net_af_packet0,ifacex=eth1", "iface", v, sizeof(v)));
	assert_false(dpdk_devarg("net_af_packet0", "iface", v, sizeof(v)));

	assert_null(dpdk_af_packet_fixup("net_null0", &fs));
	assert_int_equal(fs, 0);
	assert_null(dpdk_af_packet_fixup("net_af_packet0,iface=lo,framesz=4096", &fs));
	assert_int_equal(fs, 4096);
	assert_null(dpdk_af_packet_fixup("net_af_packet0,iface=nonexistent0", &fs));
	assert_int_equal(fs, DPDK_AF_PACKET_DEFAULT_FRAME);
	/*
	 * lo's MTU 65536 is capped at 9216: 9216 + 82 rounded up to 1 KiB is
	 * 10240; two such frames tile a 20480-byte block (5 pages) exactly.
	 */
	out = dpdk_af_packet_fixup("net_af_packet0,iface=lo", &fs);
	assert_non_null(out);
	assert_int_equal(fs, 10240);
	assert_string_equal(out, "net_af_packet0,iface=lo,framesz=10240,blocksz=20480");
	free(out);
	out = dpdk_af_packet_fixup("eth_af_packet1,iface=lo,blocksz=61440", &fs);
	assert_non_null(out);
	assert_string_equal(out, "eth_af_packet1,iface=lo,blocksz=61440,framesz=10240");
	free(out);
	assert_int_equal(dpdk_gcd(9216, 4096), 1024);
	assert_int_equal(dpdk_gcd(4096, 9216), 1024);
}

static void
test_classify_udp(void **state)
{
	struct firn_net_port *p = test_port();
	struct rte_ipv4_hdr *ip;
	struct rte_udp_hdr *udp;
	struct dpdk_parsed pp;
	static uint8_t f[9300];
	uint32_t len;

	(void)state;
	ip = (struct rte_ipv4_hdr *)(f + RTE_ETHER_HDR_LEN);
	udp = (struct rte_udp_hdr *)(ip + 1);

	len = make_udp(f, OUR_IP, 7400, 100);
	assert_int_equal(classify(p, f, len, &pp), DPDK_V_UDP);
	assert_int_equal(pp.payload_off, DPDK_HDRS);
	assert_int_equal(pp.payload_len, 100);
	assert_int_equal(pp.src_ip, ip4(PEER_IP));
	assert_int_equal(pp.src_port, htons(40000));
	/* Link padding after the datagram is fine and not payload. */
	assert_int_equal(classify(p, f, len + 10, &pp), DPDK_V_UDP);
	assert_int_equal(pp.payload_len, 100);
	/* Jumbo and empty payloads. */
	len = make_udp(f, OUR_IP, 7400, 8972);
	assert_int_equal(classify(p, f, len, &pp), DPDK_V_UDP);
	assert_int_equal(pp.payload_len, 8972);
	len = make_udp(f, OUR_IP, 7400, 0);
	assert_int_equal(classify(p, f, len, &pp), DPDK_V_UDP);
	assert_int_equal(pp.payload_len, 0);

	/* Truncated: by one byte, to the Ethernet header, below it. */
	len = make_udp(f, OUR_IP, 7400, 100);
	assert_int_equal(classify(p, f, len - 1, NULL), DPDK_V_BAD);
	assert_int_equal(classify(p, f, 20, NULL), DPDK_V_BAD);
	assert_int_equal(classify(p, f, 10, NULL), DPDK_V_BAD);
	/* Bad header checksum. */
	ip->hdr_checksum ^= 0x0100;
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_BAD);
	/* ... unless the NIC vouches for it, and bad when the NIC says so. */
	p->rx_cksum = true;
	assert_int_equal(dpdk_classify(p, f, len, RTE_MBUF_F_RX_IP_CKSUM_GOOD, &pp), DPDK_V_UDP);
	refresh_ip_cksum(f);
	assert_int_equal(dpdk_classify(p, f, len, RTE_MBUF_F_RX_IP_CKSUM_BAD, &pp), DPDK_V_BAD);
	assert_int_equal(dpdk_classify(p, f, len, RTE_MBUF_F_RX_L4_CKSUM_BAD, &pp), DPDK_V_BAD);
	assert_int_equal(dpdk_classify(p, f, len, RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN, &pp), DPDK_V_UDP);
	p->rx_cksum = false;
	/* Version, IHL, lengths. */
	ip->version_ihl = 0x65;
	refresh_ip_cksum(f);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_BAD);
	ip->version_ihl = 0x44;
	ip->hdr_checksum = 0;
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_BAD);
	len = make_udp(f, OUR_IP, 7400, 100);
	ip->total_length = htons(19);
	refresh_ip_cksum(f);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_BAD);
	ip->total_length = htons(24); /* room for only half a UDP header */
	refresh_ip_cksum(f);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_BAD);
	len = make_udp(f, OUR_IP, 7400, 100);
	udp->dgram_len = htons(109);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_BAD);
	udp->dgram_len = htons(7);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_BAD);
	/* A shorter UDP length than the IP payload is honoured. */
	udp->dgram_len = htons(58);
	assert_int_equal(classify(p, f, len, &pp), DPDK_V_UDP);
	assert_int_equal(pp.payload_len, 50);

	/* Not ours: port, address, MAC, our own frame, other protocols. */
	len = make_udp(f, OUR_IP, 7401, 100);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);
	len = make_udp(f, "198.18.0.9", 7400, 100);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);
	len = make_udp(f, OUR_IP, 7400, 100);
	memset(f, 0xff, 6);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);
	len = make_udp(f, OUR_IP, 7400, 100);
	memcpy(f + 6, our_mac, 6);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);
	len = make_udp(f, OUR_IP, 7400, 100);
	ip->next_proto_id = IPPROTO_TCP;
	refresh_ip_cksum(f);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);
	len = make_udp(f, OUR_IP, 7400, 100);
	((struct rte_ether_hdr *)f)->ether_type = htons(RTE_ETHER_TYPE_IPV6);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);

	/* Fragments: first (MF), middle, last (offset only). */
	len = make_udp(f, OUR_IP, 7400, 100);
	ip->fragment_offset = htons(RTE_IPV4_HDR_MF_FLAG);
	refresh_ip_cksum(f);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_FRAG);
	ip->fragment_offset = htons(RTE_IPV4_HDR_MF_FLAG | 185);
	refresh_ip_cksum(f);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_FRAG);
	ip->fragment_offset = htons(185);
	refresh_ip_cksum(f);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_FRAG);
	free(p);
}

static void
test_arp_and_icmp(void **state)
{
	struct firn_net_port *p = test_port();
	struct rte_arp_hdr *arp;
	struct rte_ipv4_hdr *ip;
	struct rte_icmp_hdr *icmp;
	struct dpdk_parsed pp;
	uint8_t f[1600];
	uint32_t len;

	(void)state;
	len = make_arp(f, RTE_ARP_OP_REQUEST, OUR_IP);
	assert_int_equal(classify(p, f, len, &pp), DPDK_V_ARP_REQUEST);
	assert_int_equal(pp.src_ip, ip4(PEER_IP));
	assert_int_equal(classify(p, f, len - 1, NULL), DPDK_V_BAD);
	dpdk_arp_answer(p, f);
	arp = (struct rte_arp_hdr *)(f + RTE_ETHER_HDR_LEN);
	assert_int_equal(ntohs(arp->arp_opcode), RTE_ARP_OP_REPLY);
	assert_memory_equal(f, peer_mac, 6);
	assert_memory_equal(f + 6, our_mac, 6);
	assert_memory_equal(arp->arp_data.arp_sha.addr_bytes, our_mac, 6);
	assert_memory_equal(arp->arp_data.arp_tha.addr_bytes, peer_mac, 6);
	assert_int_equal(arp->arp_data.arp_sip, ip4(OUR_IP));
	assert_int_equal(arp->arp_data.arp_tip, ip4(PEER_IP));

	len = make_arp(f, RTE_ARP_OP_REQUEST, "198.18.0.9");
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);
	len = make_arp(f, RTE_ARP_OP_REPLY, OUR_IP);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_ARP_REPLY);
	len = make_arp(f, 3, OUR_IP);
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);

	len = make_ping(f, 56);
	assert_int_equal(classify(p, f, len, &pp), DPDK_V_ICMP_ECHO);
	assert_int_equal(pp.frame_len, len);
	dpdk_icmp_answer(p, f);
	ip = (struct rte_ipv4_hdr *)(f + RTE_ETHER_HDR_LEN);
	icmp = (struct rte_icmp_hdr *)(ip + 1);
	assert_int_equal(icmp->icmp_type, RTE_IP_ICMP_ECHO_REPLY);
	assert_int_equal(rte_raw_cksum(ip, 20), 0xffff);
	assert_int_equal(rte_raw_cksum(icmp, 64), 0xffff);
	assert_int_equal(ip->src_addr, ip4(OUR_IP));
	assert_int_equal(ip->dst_addr, ip4(PEER_IP));
	assert_memory_equal(f, peer_mac, 6);
	assert_int_equal(ntohs(icmp->icmp_ident), 77);
	/* A bad ICMP checksum, and ICMP that is not an echo request. */
	len = make_ping(f, 56);
	icmp->icmp_cksum ^= 1;
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_BAD);
	len = make_ping(f, 56);
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	assert_int_equal(classify(p, f, len, NULL), DPDK_V_NOT_OURS);
	free(p);
}

/*
 * Mutate valid frames at random (bytes flipped, lengths cut or padded):
 * nothing reads out of bounds (ASan build), and whatever is accepted as UDP
 * has a valid header checksum and its payload inside the frame.
 */
static void
test_classify_mutations(void **state)
{
	struct firn_net_port *p = test_port();
	uint8_t *f = malloc(2048);
	unsigned seed = 12345, i, udp = 0;

	(void)state;
	assert_non_null(f);
	for (i = 0; i < 200000; i++) {
		uint32_t len, flips, k, cut;
		struct dpdk_parsed pp;
		enum dpdk_verdict v;

		len = i % 3 == 0   ? make_arp(f, RTE_ARP_OP_REQUEST, OUR_IP)
		      : i % 3 == 1 ? make_ping(f, rand_r(&seed) % 200)
		                   : make_udp(f, OUR_IP, 7400, rand_r(&seed) % 1400);
		flips = rand_r(&seed) % 4;
		for (k = 0; k < flips; k++)
			f[rand_r(&seed) % len] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
		cut = rand_r(&seed) % 8;
		if (cut == 0)
			len = rand_r(&seed) % (len + 1);
		else if (cut == 1)
			len += rand_r(&seed) % 64; /* padding (stale bytes) */
		/* An exact-size copy so ASan sees any read past len. */
		{
			uint8_t *g = malloc(len ? len : 1);

			assert_non_null(g);
			memcpy(g, f, len);
			v = classify(p, g, len, &pp);
			if (v == DPDK_V_UDP) {
				udp++;
				assert_true(pp.payload_off + pp.payload_len <= len);
				assert_int_equal(rte_raw_cksum(g + RTE_ETHER_HDR_LEN,
				                               (g[RTE_ETHER_HDR_LEN] & 0xf) * 4),
				                 0xffff);
			}
			free(g);
		}
	}
	assert_true(udp > 1000); /* the property was exercised */
	free(f);
	free(p);
}

static void
test_neighbours(void **state)
{
	struct firn_net_port *p = test_port();
	struct rte_ether_addr a = {{2, 0, 0, 0, 0, 0xa}}, b = {{2, 0, 0, 0, 0, 0xb}};
	struct rte_ether_addr mcast = {{1, 0, 0x5e, 0, 0, 1}};
	uint32_t peer = ip4(PEER_IP), same[6];
	struct dpdk_neigh cur, *set;
	unsigned n = 0, i;
	uint32_t cand;

	(void)state;
	set = dpdk_neigh_set(p, peer);
	assert_int_equal(dpdk_neigh_find(set, peer, &cur), -1);
	dpdk_neigh_learn(p, peer, &a, 1000);
	assert_true(dpdk_neigh_find(set, peer, &cur) >= 0);
	assert_int_equal(cur.mac, dpdk_mac_pack(&a));
	/* The peer moved to another MAC: the next frame teaches us. */
	dpdk_neigh_learn(p, peer, &b, 2000);
	assert_true(dpdk_neigh_find(set, peer, &cur) >= 0);
	assert_int_equal(cur.mac, dpdk_mac_pack(&b));
	/* A multicast source and address 0 teach nothing. */
	dpdk_neigh_learn(p, peer, &mcast, 3000);
	assert_true(dpdk_neigh_find(set, peer, &cur) >= 0);
	assert_int_equal(cur.mac, dpdk_mac_pack(&b));
	dpdk_neigh_learn(p, 0, &a, 3000);
	assert_int_equal(dpdk_neigh_find(dpdk_neigh_set(p, 0), 0, &cur), -1);

	/* Six addresses in one set of four ways: the stalest go first. */
	for (cand = 1; n < 6 && cand < 1000000; cand++) {
		uint32_t ip = htonl(0x0a000000u + cand);

		if (dpdk_neigh_set(p, ip) == set && ip != peer)
			same[n++] = ip;
	}
	assert_int_equal(n, 6);
	for (i = 0; i < 6; i++)
		dpdk_neigh_learn(p, same[i], &a, 10000 + i * 10);
	/* peer (learned at 2000) and same[0], same[1] were evicted. */
	assert_int_equal(dpdk_neigh_find(set, peer, &cur), -1);
	assert_int_equal(dpdk_neigh_find(set, same[0], &cur), -1);
	assert_int_equal(dpdk_neigh_find(set, same[1], &cur), -1);
	for (i = 2; i < 6; i++)
		assert_true(dpdk_neigh_find(set, same[i], &cur) >= 0);
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_split_args),         cmocka_unit_test(test_af_packet_fixup),
	        cmocka_unit_test(test_classify_udp),       cmocka_unit_test(test_arp_and_icmp),
	        cmocka_unit_test(test_classify_mutations), cmocka_unit_test(test_neighbours),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
