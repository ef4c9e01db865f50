/* SPDX-License-Identifier: Apache-2.0 */
/* SCSI helpers of the iSCSI target without a network: CDB transfer lengths and sense formats. */
#include <criterion/criterion.h>
#include <string.h>

#include "dataplane/iscsi/iscsi_priv.h"

Test(scsi, cdb_transfer_lengths)
{
	bool w;
	uint8_t cdb[16] = { SCSI_WRITE10 };
	put_be32(cdb + 2, 100);
	put_be16(cdb + 7, 8);
	cr_assert_eq(scsi_cdb_xfer_len(cdb, 512, &w), 4096);
	cr_assert(w);

	memset(cdb, 0, sizeof(cdb));
	cdb[0] = SCSI_READ16;
	put_be32(cdb + 10, 3);
	cr_assert_eq(scsi_cdb_xfer_len(cdb, 4096, &w), 0); /* reads carry no data-out */
	cr_assert(!w);

	memset(cdb, 0, sizeof(cdb));
	cdb[0] = SCSI_WRITE6;
	cdb[4] = 0; /* 0 means 256 blocks */
	cr_assert_eq(scsi_cdb_xfer_len(cdb, 512, &w), 256 * 512);

	memset(cdb, 0, sizeof(cdb));
	cdb[0] = SCSI_COMPARE_AND_WRITE;
	cdb[13] = 2;
	cr_assert_eq(scsi_cdb_xfer_len(cdb, 512, &w), 2 * 2 * 512);

	memset(cdb, 0, sizeof(cdb));
	cdb[0] = SCSI_VERIFY16;
	cdb[1] = 0x02; /* BYTCHK=1 */
	put_be32(cdb + 10, 4);
	cr_assert_eq(scsi_cdb_xfer_len(cdb, 512, &w), 2048);
	cdb[1] = 0x06; /* BYTCHK=3: one block */
	cr_assert_eq(scsi_cdb_xfer_len(cdb, 512, &w), 512);
	cdb[1] = 0;
	cr_assert_eq(scsi_cdb_xfer_len(cdb, 512, &w), 0);

	memset(cdb, 0, sizeof(cdb));
	cdb[0] = SCSI_PR_OUT;
	put_be32(cdb + 5, 24);
	cr_assert_eq(scsi_cdb_xfer_len(cdb, 512, &w), 24);
}

Test(scsi, fixed_and_descriptor_sense)
{
	struct cmd c;
	struct lun l;
	memset(&c, 0, sizeof(c));
	memset(&l, 0, sizeof(l));
	scsi_set_sense(&c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	cr_assert_eq(c.status, SCSI_STATUS_CHECK_CONDITION);
	cr_assert_eq(c.sense_len, 18);
	cr_assert_eq(c.sense[0], 0x70);
	cr_assert_eq(c.sense[2], SK_ILLEGAL_REQUEST);
	cr_assert_eq(c.sense[7], 10);
	cr_assert_eq(c.sense[12], 0x21);
	cr_assert_eq(c.sense[13], 0x00);

	l.d_sense = true;
	c.lun = &l;
	scsi_set_sense(&c, SK_UNIT_ATTENTION, ASC_REGISTRATIONS_PREEMPTED);
	cr_assert_eq(c.sense_len, 8);
	cr_assert_eq(c.sense[0], 0x72);
	cr_assert_eq(c.sense[1], SK_UNIT_ATTENTION);
	cr_assert_eq(c.sense[2], 0x2a);
	cr_assert_eq(c.sense[3], 0x05);
}

Test(scsi, serial_number_arithmetic)
{
	cr_assert(sn_lt(0xfffffff0u, 5));
	cr_assert(sn_gt(5, 0xfffffff0u));
	cr_assert(!sn_lt(7, 7));
	cr_assert(sn_lt(1, 2));
}
