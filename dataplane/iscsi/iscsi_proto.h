/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * iSCSI (RFC 7143) and SCSI (SPC-4/SBC-3) wire formats: every opcode, flag,
 * field offset and code the target puts on or reads from the wire lives here
 * and nowhere else.
 *
 * PDUs are handled as byte arrays with big-endian accessors rather than
 * packed structs, so the same code is correct on any alignment and the
 * offsets can be checked against the RFC tables by eye.
 */
#ifndef TS_ISCSI_PROTO_H
#define TS_ISCSI_PROTO_H

#include <stdint.h>
#include <string.h>

/* ---- Basic Header Segment ---- */
#define ISCSI_BHS_LEN 48u
#define ISCSI_DIGEST_LEN 4u
#define ISCSI_RSVD_TAG 0xffffffffu

/* byte 0 */
#define ISCSI_BHS_I 0x40u       /* immediate delivery */
#define ISCSI_OPCODE_MASK 0x3fu
/* byte 1 */
#define ISCSI_BHS_F 0x80u       /* final */

/* initiator opcodes */
#define ISCSI_OP_NOP_OUT 0x00
#define ISCSI_OP_SCSI_CMD 0x01
#define ISCSI_OP_TMF_REQ 0x02
#define ISCSI_OP_LOGIN_REQ 0x03
#define ISCSI_OP_TEXT_REQ 0x04
#define ISCSI_OP_DATA_OUT 0x05
#define ISCSI_OP_LOGOUT_REQ 0x06
#define ISCSI_OP_SNACK_REQ 0x10
/* target opcodes */
#define ISCSI_OP_NOP_IN 0x20
#define ISCSI_OP_SCSI_RSP 0x21
#define ISCSI_OP_TMF_RSP 0x22
#define ISCSI_OP_LOGIN_RSP 0x23
#define ISCSI_OP_TEXT_RSP 0x24
#define ISCSI_OP_DATA_IN 0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T 0x31
#define ISCSI_OP_ASYNC 0x32
#define ISCSI_OP_REJECT 0x3f

/* common offsets */
#define ISCSI_OFF_AHSLEN 4
#define ISCSI_OFF_DSL 5
#define ISCSI_OFF_LUN 8
#define ISCSI_OFF_ITT 16

/* SCSI Command */
#define ISCSI_CMD_R 0x40u
#define ISCSI_CMD_W 0x20u
#define ISCSI_CMD_OFF_EDTL 20
#define ISCSI_CMD_OFF_CMDSN 24
#define ISCSI_CMD_OFF_EXPSTATSN 28
#define ISCSI_CMD_OFF_CDB 32
/* SCSI Response / Data-In flags (byte 1) */
#define ISCSI_RSP_O 0x04u
#define ISCSI_RSP_U 0x02u
#define ISCSI_DATAIN_A 0x40u
#define ISCSI_DATAIN_S 0x01u
/* Data-Out / Data-In / R2T offsets */
#define ISCSI_DATA_OFF_TTT 20
#define ISCSI_DATA_OFF_DATASN 36
#define ISCSI_DATA_OFF_BUFOFF 40
/* response offsets */
#define ISCSI_RSP_OFF_STATSN 24
#define ISCSI_RSP_OFF_EXPCMDSN 28
#define ISCSI_RSP_OFF_MAXCMDSN 32
#define ISCSI_RSP_OFF_EXPDATASN 36
#define ISCSI_RSP_OFF_RESID 44
#define ISCSI_R2T_OFF_R2TSN 36
#define ISCSI_R2T_OFF_LEN 44

/* Login */
#define ISCSI_LOGIN_T 0x80u
#define ISCSI_LOGIN_C 0x40u
#define ISCSI_LOGIN_CSG(b) (((b) >> 2) & 3u)
#define ISCSI_LOGIN_NSG(b) ((b) & 3u)
#define ISCSI_STAGE_SECURITY 0
#define ISCSI_STAGE_OPERATIONAL 1
#define ISCSI_STAGE_FULL 3
#define ISCSI_LOGIN_OFF_ISID 8
#define ISCSI_LOGIN_OFF_TSIH 14
#define ISCSI_LOGIN_OFF_CID 20
#define ISCSI_LOGIN_OFF_STATUS 36
/* login status class/detail */
#define ISCSI_LOGIN_SUCCESS 0x0000
#define ISCSI_LOGIN_MOVED_TEMP 0x0101
#define ISCSI_LOGIN_AUTH_FAILED 0x0201
#define ISCSI_LOGIN_FORBIDDEN 0x0202
#define ISCSI_LOGIN_NOT_FOUND 0x0203
#define ISCSI_LOGIN_REMOVED 0x0204
#define ISCSI_LOGIN_INIT_ERR 0x0200
#define ISCSI_LOGIN_MISSING_PARAM 0x0207
#define ISCSI_LOGIN_NO_SESSION 0x020a
#define ISCSI_LOGIN_INVALID_REQ 0x020b
#define ISCSI_LOGIN_TARGET_ERR 0x0300
#define ISCSI_LOGIN_NO_RESOURCES 0x0302

/* Text */
#define ISCSI_TEXT_C 0x40u

/* TMF */
#define ISCSI_TMF_FUNC_MASK 0x7fu
#define ISCSI_TMF_OFF_RTT 20
#define ISCSI_TMF_OFF_REFCMDSN 32
#define ISCSI_TMF_ABORT_TASK 1
#define ISCSI_TMF_ABORT_TASK_SET 2
#define ISCSI_TMF_CLEAR_ACA 3
#define ISCSI_TMF_CLEAR_TASK_SET 4
#define ISCSI_TMF_LUN_RESET 5
#define ISCSI_TMF_TARGET_WARM_RESET 6
#define ISCSI_TMF_TARGET_COLD_RESET 7
#define ISCSI_TMF_TASK_REASSIGN 8
#define ISCSI_TMF_RSP_COMPLETE 0
#define ISCSI_TMF_RSP_NO_TASK 1
#define ISCSI_TMF_RSP_NO_LUN 2
#define ISCSI_TMF_RSP_NOT_SUPPORTED 5
#define ISCSI_TMF_RSP_REJECTED 255

/* Logout */
#define ISCSI_LOGOUT_REASON_MASK 0x7fu
#define ISCSI_LOGOUT_CLOSE_SESSION 0
#define ISCSI_LOGOUT_CLOSE_CONN 1
#define ISCSI_LOGOUT_REMOVE_RECOVERY 2

/* Reject reasons */
#define ISCSI_REJECT_DATA_DIGEST 0x02
#define ISCSI_REJECT_SNACK 0x03
#define ISCSI_REJECT_PROTOCOL 0x04
#define ISCSI_REJECT_NOT_SUPPORTED 0x05
#define ISCSI_REJECT_INVALID_FIELD 0x09

/* ---- SCSI status ---- */
#define SCSI_STATUS_GOOD 0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02
#define SCSI_STATUS_CONDITION_MET 0x04
#define SCSI_STATUS_BUSY 0x08
#define SCSI_STATUS_RESERVATION_CONFLICT 0x18
#define SCSI_STATUS_TASK_SET_FULL 0x28
#define SCSI_STATUS_TASK_ABORTED 0x40

/* sense keys */
#define SK_NO_SENSE 0x0
#define SK_NOT_READY 0x2
#define SK_MEDIUM_ERROR 0x3
#define SK_HARDWARE_ERROR 0x4
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION 0x6
#define SK_DATA_PROTECT 0x7
#define SK_ABORTED_COMMAND 0xb
#define SK_MISCOMPARE 0xe

/* additional sense code + qualifier, as 0xAAQQ */
#define ASC_NONE 0x0000
#define ASC_WRITE_ERROR 0x0c00
#define ASC_READ_ERROR 0x1100
#define ASC_PARAM_LIST_LENGTH 0x1a00
#define ASC_MISCOMPARE_VERIFY 0x1d00
#define ASC_INVALID_OPCODE 0x2000
#define ASC_LBA_OUT_OF_RANGE 0x2100
#define ASC_INVALID_FIELD_CDB 0x2400
#define ASC_LUN_NOT_SUPPORTED 0x2500
#define ASC_INVALID_FIELD_PARAM 0x2600
#define ASC_WRITE_PROTECTED 0x2700
#define ASC_POWER_ON_RESET 0x2900
#define ASC_BUS_DEVICE_RESET 0x2903
#define ASC_I_T_NEXUS_LOSS 0x2907
#define ASC_MODE_PARAMS_CHANGED 0x2a01
#define ASC_CAPACITY_CHANGED 0x2a09
#define ASC_RESERVATIONS_PREEMPTED 0x2a03
#define ASC_RESERVATIONS_RELEASED 0x2a04
#define ASC_REGISTRATIONS_PREEMPTED 0x2a05
#define ASC_SAVING_NOT_SUPPORTED 0x3900
#define ASC_MEDIUM_NOT_PRESENT 0x3a00
#define ASC_INTERNAL_TARGET_FAILURE 0x4400
#define ASC_REMOVAL_PREVENTED 0x5302
#define ASC_INSUFFICIENT_REG_RESOURCES 0x5504

/* opcodes */
#define SCSI_TEST_UNIT_READY 0x00
#define SCSI_REQUEST_SENSE 0x03
#define SCSI_READ6 0x08
#define SCSI_WRITE6 0x0a
#define SCSI_INQUIRY 0x12
#define SCSI_MODE_SELECT6 0x15
#define SCSI_RESERVE6 0x16
#define SCSI_RELEASE6 0x17
#define SCSI_MODE_SENSE6 0x1a
#define SCSI_START_STOP_UNIT 0x1b
#define SCSI_SEND_DIAGNOSTIC 0x1d
#define SCSI_PREVENT_ALLOW 0x1e
#define SCSI_READ_CAPACITY10 0x25
#define SCSI_READ10 0x28
#define SCSI_WRITE10 0x2a
#define SCSI_WRITE_VERIFY10 0x2e
#define SCSI_VERIFY10 0x2f
#define SCSI_PREFETCH10 0x34
#define SCSI_SYNC_CACHE10 0x35
#define SCSI_READ_DEFECT10 0x37
#define SCSI_WRITE_SAME10 0x41
#define SCSI_UNMAP 0x42
#define SCSI_MODE_SELECT10 0x55
#define SCSI_RESERVE10 0x56
#define SCSI_RELEASE10 0x57
#define SCSI_MODE_SENSE10 0x5a
#define SCSI_PR_IN 0x5e
#define SCSI_PR_OUT 0x5f
#define SCSI_READ16 0x88
#define SCSI_COMPARE_AND_WRITE 0x89
#define SCSI_WRITE16 0x8a
#define SCSI_WRITE_VERIFY16 0x8e
#define SCSI_VERIFY16 0x8f
#define SCSI_PREFETCH16 0x90
#define SCSI_SYNC_CACHE16 0x91
#define SCSI_WRITE_SAME16 0x93
#define SCSI_SERVICE_ACTION_IN16 0x9e
#define SCSI_REPORT_LUNS 0xa0
#define SCSI_MAINTENANCE_IN 0xa3
#define SCSI_READ12 0xa8
#define SCSI_WRITE12 0xaa
#define SCSI_WRITE_VERIFY12 0xae
#define SCSI_VERIFY12 0xaf
#define SCSI_READ_DEFECT12 0xb7
/* service actions */
#define SAI_READ_CAPACITY16 0x10
#define SAI_GET_LBA_STATUS 0x12
#define MI_REPORT_SUPPORTED_OPCODES 0x0c

/* persistent reservations */
#define PR_IN_READ_KEYS 0
#define PR_IN_READ_RESERVATION 1
#define PR_IN_REPORT_CAPABILITIES 2
#define PR_IN_READ_FULL_STATUS 3
#define PR_OUT_REGISTER 0
#define PR_OUT_RESERVE 1
#define PR_OUT_RELEASE 2
#define PR_OUT_CLEAR 3
#define PR_OUT_PREEMPT 4
#define PR_OUT_PREEMPT_ABORT 5
#define PR_OUT_REGISTER_IGNORE 6
#define PR_OUT_REGISTER_MOVE 7
#define PR_TYPE_WE 1
#define PR_TYPE_EA 3
#define PR_TYPE_WERO 5
#define PR_TYPE_EARO 6
#define PR_TYPE_WEAR 7
#define PR_TYPE_EAAR 8

/* ---- big-endian accessors ---- */
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get_be24(const uint8_t *p) { return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]; }
static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t get_be64(const uint8_t *p) { return (uint64_t)get_be32(p) << 32 | get_be32(p + 4); }
static inline void put_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put_be24(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 16); p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)v;
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void put_be64(uint8_t *p, uint64_t v) { put_be32(p, (uint32_t)(v >> 32)); put_be32(p + 4, (uint32_t)v); }

/** Data segment length of a BHS. */
static inline uint32_t iscsi_bhs_dsl(const uint8_t *bhs) { return get_be24(bhs + ISCSI_OFF_DSL); }
/** Additional header segments length in bytes. */
static inline uint32_t iscsi_bhs_ahs(const uint8_t *bhs) { return (uint32_t)bhs[ISCSI_OFF_AHSLEN] * 4u; }
static inline uint8_t iscsi_bhs_op(const uint8_t *bhs) { return bhs[0] & ISCSI_OPCODE_MASK; }

/** Serial number arithmetic (RFC 1982, 32 bits): a < b. */
static inline int sn_lt(uint32_t a, uint32_t b) { return a != b && (int32_t)(a - b) < 0; }
static inline int sn_gt(uint32_t a, uint32_t b) { return a != b && (int32_t)(a - b) > 0; }

#endif /* TS_ISCSI_PROTO_H */
