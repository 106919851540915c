#ifndef PKG04_L04_08_H
#define PKG04_L04_08_H
#include <string>
#include <vector>

namespace l04_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_08

#endif
