#ifndef PKG04_L04_04_H
#define PKG04_L04_04_H
#include <string>
#include <vector>

namespace l04_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_04

#endif
