#ifndef PKG08_L08_08_H
#define PKG08_L08_08_H
#include <string>
#include <vector>

namespace l08_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_08

#endif
