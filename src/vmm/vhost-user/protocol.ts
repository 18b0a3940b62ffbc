// vhost-user message numbers and flags (QEMU docs/interop/vhost-user.rst).
export const HEADER_SIZE = 12;
export const MAX_PAYLOAD = 4096;
export const FLAG_VERSION = 0x1;
export const FLAG_REPLY = 0x4;
export const FLAG_NEED_REPLY = 0x8;

export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_SLAVE_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
} as const;

export const reqName = new Map<number, string>(Object.entries(Req).map(([k, v]) => [v, k]));

/** VHOST_USER_F_PROTOCOL_FEATURES in the virtio feature word */
export const F_PROTOCOL_FEATURES = 1n << 30n;

export const ProtocolFeature = {
  MQ: 1n << 0n,
  REPLY_ACK: 1n << 3n,
  CONFIG: 1n << 9n,
} as const;

/** Bit 8 of SET_VRING_KICK/CALL/ERR: no fd accompanies the message. */
export const VRING_NOFD_MASK = 0x100;
export const VRING_IDX_MASK = 0xff;
