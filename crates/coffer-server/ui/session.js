// Who is logged in. The interface hides what the user's role does not allow; the server
// refuses it anyway.

const ranks = { viewer: 0, operator: 1, admin: 2 };

export const session = {
  user: null,
  /// Whether the user's role is at least `role`.
  can(role) {
    return this.user !== null && ranks[this.user.role] >= ranks[role];
  },
};
