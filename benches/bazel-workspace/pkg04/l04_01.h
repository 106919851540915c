#ifndef PKG04_L04_01_H
#define PKG04_L04_01_H
#include <string>
#include <vector>

namespace l04_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_01

#endif
